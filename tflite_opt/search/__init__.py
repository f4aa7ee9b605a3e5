"""Hardware-aware architecture search: the best accuracy under a latency and size budget.

KerasTuner's oracles pick candidates from the efficient builders and a compression recipe
(``space``) under the search's settings (``config``); each trial is trained, converted and
measured on its ``.tflite`` (``tuner``, ``training``, ``objective``; near the budget again,
against a reference: ``latency_check``), or priced by a phone's ``benchmark_model`` op profile
(``latency_table``), and keeps its figures in a record (``records``); the Pareto front is
computed from every trial's figures (``pareto``); the pick is trained again on all the
training images before it ships (``final``).

Example:
    >>> from tflite_opt.search import Budgets, SearchConfig, run_search
    >>> result = run_search(SearchConfig("outputs/search", Budgets(2000, 200_000), trials=12))
"""

from tflite_opt.search.config import ORACLES, SearchConfig
from tflite_opt.search.final import final_verdict, retrain_final
from tflite_opt.search.latency_check import (LatencyCheck, NoiseMargin, RatioCheck, check_latency,
                                             check_latency_against, reference_model)
from tflite_opt.search.latency_table import LatencyEstimate, LatencyTable, parse_profile
from tflite_opt.search.objective import Budgets, Measurement, measure_latency
from tflite_opt.search.pareto import pareto_front, write_pareto
from tflite_opt.search.space import (ARCHITECTURES, Candidate, SearchSpace,
                                     weight_bytes_lower_bound)
from tflite_opt.search.tuner import (SearchResult, evaluate_candidate, make_oracle, run_search,
                                     search_data)

__all__ = [
    "ARCHITECTURES", "Budgets", "Candidate", "LatencyCheck", "LatencyEstimate", "LatencyTable",
    "Measurement", "NoiseMargin", "ORACLES", "RatioCheck", "SearchConfig", "SearchResult",
    "SearchSpace", "check_latency", "check_latency_against", "evaluate_candidate",
    "final_verdict", "make_oracle", "measure_latency", "parse_profile", "pareto_front",
    "reference_model", "retrain_final", "run_search", "search_data", "weight_bytes_lower_bound",
    "write_pareto",
]
