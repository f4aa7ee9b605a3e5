"""The operator codes of a ``.tflite`` model and the op name of every node.

Example:
    >>> [c.name for c in operator_codes(read_tflite("m.tflite"))]
    ['CONV_2D', 'FULLY_CONNECTED', 'SOFTMAX']
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class OperatorCode:
    """One entry of a model's operator-code table.

    Attributes:
        builtin: The builtin op name (``"CONV_2D"``; ``"CUSTOM"`` for custom and Flex ops;
            ``"BUILTIN_<n>"`` for a code this schema does not know).
        custom: The custom code (``"FlexCumprod"``), or ``""`` for builtin ops.
        version: The op version.
    """

    builtin: str
    custom: str
    version: int

    @property
    def name(self) -> str:
        """What the op is called: the custom code of a custom/Flex op, else the builtin name."""
        return self.custom if self.builtin == "CUSTOM" and self.custom else self.builtin


def operator_codes(data: bytes) -> list[OperatorCode]:
    """The operator-code table of a model already checked by ``read_tflite``.

    Example:
        >>> [c.name for c in operator_codes(read_tflite("m.tflite"))]
        ['CONV_2D', 'FULLY_CONNECTED', 'SOFTMAX']
    """
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = schema.Model.GetRootAs(data, 0)
    codes = []
    for c in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(c)
        # Codes below 127 may sit only in the deprecated field (older converters); the
        # schema's rule is to take the larger of the two.
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        custom = code.CustomCode().decode("utf-8", "replace") if code.CustomCode() else ""
        codes.append(OperatorCode(names.get(builtin, f"BUILTIN_{builtin}"), custom, code.Version()))
    return codes


def node_op_names(data: bytes) -> list[str]:
    """The op name of every node, subgraph by subgraph, of a model checked by ``read_tflite``.

    Example:
        >>> node_op_names(read_tflite("m.tflite"))
        ['CONV_2D', 'CONV_2D', 'MAX_POOL_2D', ...]
    """
    from ai_edge_litert import schema_py_generated as schema

    names = [code.name for code in operator_codes(data)]
    model = schema.Model.GetRootAs(data, 0)
    return [names[model.Subgraphs(s).Operators(o).OpcodeIndex()]
            for s in range(model.SubgraphsLength())
            for o in range(model.Subgraphs(s).OperatorsLength())]
