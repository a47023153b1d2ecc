"""A character's persona: who the influencer is, which every content plan is written from."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Persona(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=120)
    niche: str = Field(default="", max_length=200, description="e.g. 'outdoor fitness'")
    tone: str = Field(default="", max_length=200, description="e.g. 'warm, upbeat, a little nerdy'")
    audience: str = Field(default="", max_length=200, description="e.g. 'busy professionals in their 30s'")
    do: list[str] = Field(default_factory=list, max_length=12, description="things the persona always does")
    dont: list[str] = Field(default_factory=list, max_length=12, description="things the persona never does")

    @field_validator("do", "dont")
    @classmethod
    def _clean_rules(cls, values: list[str]) -> list[str]:
        cleaned = [v.strip() for v in values if v.strip()]
        too_long = [v for v in cleaned if len(v) > 200]
        if too_long:
            raise ValueError(f"each rule must be at most 200 characters ({too_long[0][:30]}…)")
        return cleaned

    def describe(self) -> str:
        """The persona as a few lines, for prompts and the plan's header."""
        lines = [f"Name: {self.name}"]
        for label, value in (("Niche", self.niche), ("Tone", self.tone), ("Audience", self.audience)):
            if value:
                lines.append(f"{label}: {value}")
        if self.do:
            lines.append("Always: " + "; ".join(self.do))
        if self.dont:
            lines.append("Never: " + "; ".join(self.dont))
        return "\n".join(lines)
