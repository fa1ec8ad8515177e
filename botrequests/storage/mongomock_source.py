"""The compiled pipeline's per-document work written out as Python source, one function
per stage.

`mongomock_pipeline` compiles each expression to a tree of closures; a stats call runs
some forty of them per request (a `$cond` calling an `$ifNull` calling a field lookup, for
each of ten accumulators), and the calls cost more than the work. Here the same constructs
— field paths, constants, `$ifNull`, `$cond`, `$eq` and the orderings — become the
statements of one function, with the very tests each closure makes, in the same order; any
other construct (`$filter`, `$dateToString`, variables, document literals) is called as its
closure. No value of the pipeline is written into the source: field names and constants
are bound as names (`c0`, `c1`, …), so the text is made of this module's own words only.
"""

from collections.abc import Callable
from typing import Any

Expression = Callable[[dict, dict], Any]
Fallback = Callable[[Any, bool], Expression]


class Source:
    """Statements being written, and the names they use."""

    def __init__(
        self,
        fallback: Fallback,
        combine: dict[str, Callable[[Any, Any], Any]],
        missing: Any,
        walk: Callable[[Any, list[str]], Any],
        falsy: tuple,
    ) -> None:
        self.fallback, self.combine = fallback, combine
        self.names: dict[str, Any] = {"M": missing, "WALK": walk, "FALSY": falsy, "NOVARS": {}}
        self.lines: list[str] = []
        self._temps = 0

    def constant(self, value: Any) -> str:
        name = f"c{len(self.names)}"
        self.names[name] = value
        return name

    def temp(self) -> str:
        self._temps += 1
        return f"t{self._temps}"

    def each_row(self) -> None:
        """The loop the stage's statements (at depth 1) run in, over `rows`."""
        self.line(0, "for row in rows:")
        self.line(1, "variables = NOVARS")

    def line(self, depth: int, text: str) -> None:
        self.lines.append("    " * depth + text)

    def expression(self, spec: Any, target: str, depth: int, ignore_missing: bool) -> None:
        """Statements at `depth` leaving `spec`'s value (or M, a missing field) in `target`."""
        if isinstance(spec, str) and spec.startswith("$") and not spec.startswith("$$"):
            parts = spec[1:].split(".")
            if all(parts) and len(parts) <= 2:
                self.line(depth, f"{target} = row.get({self.constant(parts[0])}, M)")
                if len(parts) == 2:
                    inner = self.constant(parts[1])
                    self.line(depth, f"if type({target}) is dict:")
                    self.line(depth + 1, f"{target} = {target}.get({inner}, M)")
                    self.line(depth, f"elif {target} is not M:")
                    walked = self.constant([parts[1]])
                    self.line(depth + 1, f"{target} = WALK({target}, {walked})")
                return
        elif not isinstance(spec, dict | list | tuple | set) and not (
            isinstance(spec, str) and spec.startswith("$")
        ):
            self.line(depth, f"{target} = {self.constant(spec)}")
            return
        elif isinstance(spec, dict) and len(spec) == 1:
            ((operator, argument),) = spec.items()
            if isinstance(argument, list) and len(argument) == 2 and operator == "$ifNull":
                self.expression(argument[0], target, depth, ignore_missing)
                self.line(depth, f"if {target} is None or {target} is M:")
                self.expression(argument[1], target, depth + 1, ignore_missing)
                return
            if isinstance(argument, list) and len(argument) == 3 and operator == "$cond":
                holds = self.temp()
                self.expression(argument[0], holds, depth, ignore_missing)
                # mongodb_to_bool, as the closure tests it; a missing condition is false
                self.line(depth, f"if {holds} is not M and {holds} not in FALSY:")
                self.expression(argument[1], target, depth + 1, ignore_missing)
                self.line(depth, "else:")
                self.expression(argument[2], target, depth + 1, ignore_missing)
                return
            if isinstance(argument, list) and len(argument) == 2 and operator in self.combine:
                first, second = self.temp(), self.temp()
                combine = self.constant(self.combine[operator])
                self.expression(argument[0], first, depth, ignore_missing)
                self.line(depth, f"if {first} is M:")
                self.line(depth + 1, f"{target} = M")
                self.line(depth, "else:")
                self.expression(argument[1], second, depth + 1, ignore_missing)
                self.line(
                    depth + 1, f"{target} = M if {second} is M else {combine}({first}, {second})"
                )
                return
        # Anything else (or a malformed form: the closure compiler refuses it as before).
        compiled = self.constant(self.fallback(spec, ignore_missing))
        self.line(depth, f"{target} = {compiled}(row, variables)")

    def function(self, name: str, arguments: str) -> Callable:
        """The statements as the body of `def name(arguments)`."""
        text = "\n".join([f"def {name}({arguments}):", *("    " + line for line in self.lines)])
        namespace = dict(self.names)
        exec(compile(text, f"<compiled {name}>", "exec"), namespace)  # noqa: S102
        return namespace[name]
