"""A video's prompts over time: the first from 0 s, each later one from its start time on."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import InputError
from .settings import GenerationSettings


@dataclass(frozen=True)
class PromptSchedule:
    """`(start seconds, prompt)` entries, sorted; the command line's `--prompt` and `--prompt-at`."""

    entries: tuple[tuple[float, str], ...]

    @classmethod
    def parse(cls, prompt: str, prompt_at: list[str]) -> PromptSchedule:
        """`prompt` from 0 s, then each `SECONDS=TEXT` of `prompt_at` from its time on."""
        entries = [(0.0, prompt)]
        for item in prompt_at:
            seconds, sep, text = item.partition("=")
            try:
                start = float(seconds)
            except ValueError:
                start = math.nan
            if not sep or not text or math.isnan(start) or start < 0:
                raise InputError("bad_request", f"--prompt-at wants SECONDS=TEXT, got {item!r}")
            entries.append((start, text))
        return cls(tuple(sorted(entries, key=lambda entry: entry[0])))

    @classmethod
    def per_section(cls, settings: GenerationSettings, prompts: dict[int, str]) -> PromptSchedule:
        """The schedule that gives section i (playback order) `prompts[i]`: a video's timeline
        replayed (`render --from`). Sections without an entry keep the one before."""
        return cls(tuple((index * settings.frames_per_section / settings.fps, prompt)
                         for index, prompt in sorted(prompts.items())))

    @property
    def prompts(self) -> list[str]:
        return [prompt for _, prompt in self.entries]

    def prompt_at(self, seconds: float) -> str:
        current = self.entries[0][1]
        for start, prompt in self.entries:
            if start <= seconds:
                current = prompt
        return current

    def for_section(self, settings: GenerationSettings, index: int) -> str:
        """The prompt of section `index` (playback order): the one in force at its first frame."""
        return self.prompt_at(index * settings.frames_per_section / settings.fps)

    def check_within(self, duration: float) -> None:
        """A prompt that starts after the video ends would be silently ignored: refuse it."""
        for start, _ in self.entries:
            if start >= duration:
                raise InputError(
                    "bad_request", f"--prompt-at {start:g}s is outside the video, which is {duration:.2f}s long"
                )
