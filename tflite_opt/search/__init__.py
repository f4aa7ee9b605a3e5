"""Hardware-aware architecture search: the best accuracy under a latency and size budget.

KerasTuner's oracles pick candidates from the efficient builders and a compression recipe
(``space``); each trial is trained, converted and measured on its ``.tflite`` (``tuner``,
``objective``), or priced by a phone's ``benchmark_model`` op profile (``latency_table``);
the Pareto front is computed from every trial's figures (``pareto``).

Example:
    >>> from tflite_opt.search import Budgets, SearchConfig, run_search
    >>> result = run_search(SearchConfig("outputs/search", Budgets(2000, 200_000), trials=12))
"""

from tflite_opt.search.latency_table import LatencyEstimate, LatencyTable, parse_profile
from tflite_opt.search.objective import Budgets, Measurement, measure_latency
from tflite_opt.search.pareto import pareto_front, write_pareto
from tflite_opt.search.space import (ARCHITECTURES, Candidate, SearchSpace,
                                     weight_bytes_lower_bound)
from tflite_opt.search.tuner import (ORACLES, SearchConfig, SearchResult, evaluate_candidate,
                                     make_oracle, run_search)

__all__ = [
    "ARCHITECTURES", "Budgets", "Candidate", "LatencyEstimate", "LatencyTable", "Measurement",
    "ORACLES", "SearchConfig", "SearchResult", "SearchSpace", "evaluate_candidate",
    "make_oracle", "measure_latency", "parse_profile", "pareto_front", "run_search",
    "weight_bytes_lower_bound", "write_pareto",
]
