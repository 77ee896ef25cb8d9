"""Typed configuration of a model: everything :func:`ordinalclip.modeling.build_model` needs."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Literal, cast

# The default context of every task is MORPH's age prompt because the reference code initialises it so for
# every dataset: reference parity (golden vectors, reproduction configs) beats a task-neutral wording.
DEFAULT_CONTEXT = "age estimation: the age of the person is"
MORPH_CONTEXT = DEFAULT_CONTEXT  # the old name, kept for imports written before DEFAULT_CONTEXT

# How a features tower maps its input into the joint space (``model.image.project``):
#   auto          identity when the features already have the joint width, else a learnable projection;
#   identity      no projection (features must have the joint width): features already in the text tower's
# space;   linear        a learnable bias-free projection, randomly initialised (kaiming normal);
# identity_init a learnable same-width projection that starts as the identity. ``true`` / ``false`` (the old
# boolean) still load: true = linear, false = identity.
ProjectMode = Literal["auto", "identity", "linear", "identity_init"]


@dataclass
class ClipConfig:
    """Where the CLIP towers come from (see :func:`ordinalclip.modeling.load_clip`)."""

    name: str | None = "RN50"  # open_clip architecture; null = infer from an OpenAI state-dict file
    pretrained: str | None = None  # open_clip tag ("openai", ...) or a local file; null = random weights
    quick_gelu: bool | None = None
    allow_torchscript: bool = False
    custom: dict[str, Any] | None = (
        None  # open_clip.CLIP kwargs for a custom architecture (tests, tiny models)
    )
    tokenizer: str | None = None  # local Hugging Face tokenizer folder (SigLIP, CLIPA, ...): no download
    hf_model: str | None = None  # local transformers CLIPModel / SiglipModel folder: both towers from it
    hf_config: dict[str, Any] | None = None  # its config.json (exports store it to rebuild the image tower)


@dataclass
class ImageTowerConfig:
    """The image tower."""

    # Old key -> new key; config.typed.from_dict reads the old one (old YAMLs and checkpoints) with a warning.
    RENAMED_KEYS: ClassVar[dict[str, str]] = {"pretrained": "imagenet_weights"}

    kind: Literal["clip", "vgg16", "resnet50", "efficientnet_lite0", "timm", "features"] = "clip"
    weights: str | None = None  # local weights file for vgg16 / resnet50 / timm (timm: else random)
    timm_model: str | None = None  # timm: the architecture name (timm.list_models())
    timm_kwargs: dict[str, Any] | None = None  # timm: extra timm.create_model arguments
    imagenet_weights: bool = True  # efficientnet_lite0: load the package's ImageNet weights (false = random)
    input_dim: int | None = None  # features: width of the precomputed vectors
    project: ProjectMode | bool = "auto"  # features: how they enter the joint space (see ProjectMode)

    def projection(self, embed_dim: int | None) -> Literal["identity", "linear", "identity_init"]:
        """The projection a features tower gets for a joint width of ``embed_dim`` (``auto`` and the old
        booleans resolved); raises ``ValueError`` when an identity cannot reach that width."""
        # configs from before the modes: true = linear, false = identity
        old = {True: "linear", False: "identity"}
        mode: str = old[self.project] if isinstance(self.project, bool) else self.project
        if mode == "auto":
            mode = "identity" if embed_dim is None or self.input_dim == embed_dim else "linear"
        if mode not in ("identity", "linear", "identity_init"):
            raise ValueError(
                f"model.image.project: expected auto, identity, linear or identity_init, got {mode!r}"
            )
        if mode in ("identity", "identity_init") and embed_dim is not None and self.input_dim != embed_dim:
            raise ValueError(
                f"model.image.project: {self.project!r} keeps the width, but the features are "
                f"{self.input_dim}-d and the joint width is {embed_dim}: use project: linear "
                "(or auto)"
            )
        return cast(Literal["identity", "linear", "identity_init"], mode)


@dataclass
class TextTowerConfig:
    """The (frozen) text tower."""

    # Old key -> new key (see ImageTowerConfig.RENAMED_KEYS).
    RENAMED_KEYS: ClassVar[dict[str, str]] = {"path": "route"}

    kind: Literal["clip", "huggingface"] = "clip"
    hf_model: str | None = None  # huggingface: a local folder or installed model name
    # How the prompts are encoded (clip towers): shared_prefix runs the shared context once, truncated stops
    # at the longest prompt, naive runs all 77 positions like the reference (see backbones/text.py).
    route: Literal["shared_prefix", "truncated", "naive"] = "shared_prefix"
    freeze: bool = True


@dataclass
class PromptConfig:
    """The prompt learner (reference notes §1.2)."""

    learner: Literal["rank", "plain"] = "rank"  # rank = OrdinalCLIP, plain = CoOp
    num_base_ranks: int = 3
    interpolation: Literal["linear", "inv_prop", "local_linear"] = "linear"
    context_init: str | None = DEFAULT_CONTEXT  # null = random context of num_context_tokens
    num_context_tokens: int = 10
    rank_specific_context: bool = False
    tokens_per_rank: int = 1
    base_rank_names: list[str] | None = None  # rank learner: the C' base-rank names; null = random
    base_rank_names_file: str | None = None  # same, one name per line
    rank_names: list[str] | None = None  # plain (CoOp) learner and zero-shot: the C rank names; null = random
    rank_names_file: str | None = None  # same, one name per line
    position: Literal["tail", "front", "middle"] = "tail"
    init_std: float = 0.02


@dataclass
class ModelConfig:
    """A whole model.

    ``arch``: ``prompts`` (a prompt learner + text tower: OrdinalCLIP with ``prompts.learner: rank``, CoOp
    with ``plain``) or ``cosine`` (the CNN baseline of the paper: image tower + learnable prototypes, scale
    100), ``linear`` (softmax head), ``coral`` / ``corn`` (ordinal binary-task heads), ``zeroshot`` (CLIP with
    hand-written prompts: the rank names of ``prompts.rank_names`` in each of ``zero_shot_templates``,
    averaged; nothing is trained), ``prior_head`` (a learnable cosine head initialised from the prototypes of
    the OrdinalCLIP / CoOp model that ``prompts`` describes, as built: the language prior as a linear probe;
    no text tower after building). ``ordinalclip``, the old name of ``prompts``, still loads with a warning.
    """

    # Old value -> new value of a field; config.typed.from_dict reads the old one with a warning.
    RENAMED_VALUES: ClassVar[dict[str, dict[Any, Any]]] = {"arch": {"ordinalclip": "prompts"}}

    arch: Literal["prompts", "cosine", "linear", "coral", "corn", "zeroshot", "prior_head"] = "prompts"
    num_ranks: int = 101
    clip: ClipConfig = field(default_factory=ClipConfig)
    image: ImageTowerConfig = field(default_factory=ImageTowerConfig)
    text: TextTowerConfig = field(default_factory=TextTowerConfig)
    prompts: PromptConfig = field(default_factory=PromptConfig)
    embed_dim: int | None = None  # joint width when no CLIP tower sets it
    logit_scale: float | None = None  # s itself (not log); null = the CLIP checkpoint's (cosine: 100)
    learn_logit_scale: bool = False
    zero_shot_templates: list[str] = field(default_factory=lambda: ["a photo of {}."])

    def uses_text(self) -> bool:
        """True for the architectures that run a text tower (OrdinalCLIP, CoOp, zero-shot)."""
        return self.arch in ("prompts", "zeroshot", "prior_head")

    def uses_clip(self) -> bool:
        """True when building this model loads CLIP: a CLIP image tower, or CLIP's text tower in a text
        model."""
        return self.image.kind == "clip" or (self.uses_text() and self.text.kind == "clip")

    @classmethod
    def upgrade_old_spellings(
        cls, data: Mapping[str, Any], path: str, deprecated: Callable[[str], None]
    ) -> Mapping[str, Any]:
        """``data`` (a model mapping, ``arch`` values already renamed) with the rank learner's
        ``prompts.rank_names(_file)`` resolved, each deprecated spelling reported to ``deprecated``. Called by
        :func:`ordinalclip.config.typed.from_dict` (which passes its deprecation warning).

        Next to the rank learner (without ``base_rank_names`` or its file, which keep both keys' meanings):

        * C names (``num_ranks``, one per rank) name the ranks: the base ranks are the ranks
          (``num_base_ranks`` becomes C), one prompt embedding initialised from each name; no warning;
        * C' names (``num_base_ranks``) are the old spelling of ``base_rank_names`` (configs and checkpoints
          wrote them there before that key existed): moved, with a deprecation warning;
        * any other count stays where it is: building the learner
          (:func:`ordinalclip.modeling.build.build_prompt_learner`) fails naming the key and both counts (a
          names file loaded on its own, before the config that sets C, still reads).
        """
        prompts = data.get("prompts")
        if data.get("arch", "prompts") != "prompts" or not isinstance(prompts, Mapping):
            return data
        if prompts.get("learner", "rank") != "rank":
            return data
        if prompts.get("base_rank_names") is not None or prompts.get("base_rank_names_file") is not None:
            return data
        where = f"{path}.prompts" if path else "prompts"
        count = _names_given(prompts)
        num_ranks = data.get("num_ranks", _default(cls, "num_ranks"))
        if count is not None and count == num_ranks:
            return {**data, "prompts": {**prompts, "num_base_ranks": num_ranks}}
        base = prompts.get("num_base_ranks", _default(PromptConfig, "num_base_ranks"))
        if count is not None and count != base:
            return data  # neither: building the learner names the key and both counts
        moved = dict(prompts)
        for old, new in (("rank_names", "base_rank_names"), ("rank_names_file", "base_rank_names_file")):
            if moved.get(old) is None:
                continue
            deprecated(
                f"config key '{where}.{old}' with the rank learner holds the C' base-rank names: it is now "
                f"'{where}.{new}' ('{where}.{old}' holds the C rank names of the plain learner and zero-shot)"
            )
            moved[new] = moved.pop(old)
        if moved.keys() == prompts.keys():
            return data
        return {**data, "prompts": moved}


def _default(cls: type, name: str) -> Any:
    """The default of the dataclass field ``name`` of ``cls``."""
    return next(f.default for f in fields(cls) if f.name == name)


def read_rank_names(path: str | Path) -> list[str]:
    """Rank names, one per non-empty line (underscores read as spaces when tokenised).

    The one reader of rank-names files. Raises ``FileNotFoundError`` (no such file) or ``ValueError`` (not
    UTF-8, or no names), both naming the file; callers that know the config key re-raise with it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"rank names file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise ValueError(f"{path}: no rank names (expected one name per line)")
    return names


def count_rank_names(names: Sequence[str] | None, file: str | Path | None) -> int | None:
    """How many names a list (``names``) or a names file holds: None for neither, or a file that is not there
    (yet); 0 for a file with no readable names (:func:`read_rank_names` says why when the names are read)."""
    if names is not None:
        return len(names)
    if not file:
        return None
    try:
        return len(read_rank_names(file))
    except FileNotFoundError:
        return None
    except ValueError:
        return 0


def _names_given(prompts: Mapping[str, Any]) -> int | None:
    """How many names ``rank_names`` lists, or its file holds (:func:`count_rank_names`)."""
    names, file = prompts.get("rank_names"), prompts.get("rank_names_file")
    listed = names if isinstance(names, list) else None
    return count_rank_names(listed, file if isinstance(file, str) else None)
