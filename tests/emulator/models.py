"""The models the emulated LM Studio knows (downloaded, loaded, their contexts)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ModelSpec:
    """A model known to the emulated LM Studio (downloaded; `loaded` if in memory)."""

    key: str
    loaded: bool = True
    context_length: int = 32768
    max_context_length: int = 262144
    vision: bool = False
    display_name: str = ""
    publisher: str = ""
    architecture: str = "qwen3moe"
    #: how it was loaded: "rest" (the load API), "jit" (a request), None (there at the start)
    loaded_by: str | None = None
    parallel: int = 1  # n_parallel; 4 after an API or JIT load

    def __post_init__(self) -> None:
        self.display_name = self.display_name or self.key.split("/")[-1]
        self.publisher = self.publisher or self.key.split("/")[0]


def default_models() -> list[ModelSpec]:
    """One loaded coder model and one downloaded-but-not-loaded vision model."""
    return [
        ModelSpec("qwen/qwen3-coder-30b", display_name="Qwen3 Coder 30B"),
        ModelSpec(
            "google/gemma-3-12b",
            loaded=False,
            context_length=4096,
            max_context_length=131072,
            vision=True,
            display_name="Gemma 3 12B",
            architecture="gemma3",
        ),
    ]
