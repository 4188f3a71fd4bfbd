"""A library stack as a matrix names it: a pin set layered over xeonft's own environment (built by
`harness.launch.stacks`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from harness.base.errors import XeonftError


class Stack(BaseModel):
    """A named pin set (`{name: tf-5.20, pins: ["transformers==5.20.0"]}`), or a requirements file's lines."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
    pins: tuple[str, ...] = ()
    requirements: str | None = None  # a file of pins, read when the matrix is loaded (its lines join `pins`)

    @field_validator("pins", mode="before")
    @classmethod
    def _pins(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        return tuple(sorted({str(p).strip() for p in value if str(p).strip()}))

    @property
    def torch_pins(self) -> tuple[str, ...]:
        """Pins of torch itself: a stack with one installs a torch of its own (gigabytes), not the shared one."""
        return tuple(p for p in self.resolved().pins if re.split(r"[\s=<>!~;\[@]", p, maxsplit=1)[0].lower() == "torch")

    def resolved(self) -> Stack:
        """The stack with its requirements file's lines folded into `pins` (comments and blanks dropped)."""
        if not self.requirements:
            return self
        path = Path(self.requirements)
        try:
            lines = [ln.split("#")[0].strip() for ln in path.read_text(encoding="utf-8").splitlines()]
        except OSError as err:
            raise XeonftError(f"stack {self.name}: cannot read {path}: {err.strerror or err}") from None
        return Stack(name=self.name, pins=(*self.pins, *[ln for ln in lines if ln]))
