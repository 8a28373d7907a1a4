"""The optional LLM namer: an OpenAI-compatible chat endpoint names a latent
from its exemplars' reports.

Only the standard library is used (urllib). The API key is read from the
environment variable named in the config, never from a config file. Every
answer is cached on disk, one JSON file per request keyed by the sha256 of
(model, prompt), so a rerun or an audit makes no calls; a reply that cannot be
parsed is an error and is not cached.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, InputError
from ..io import read_json, write_json

log = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "You name the visual concept that one feature of a medical image classifier detects. "
    "You are given the reports of the images that activate the feature most strongly. "
    "Find the finding they share that is unusual in general, ignoring what every report says."
)
ANSWER_FORMAT = (
    'Answer with only a JSON object: {"name": "<a 1-4 word noun phrase, in the wording the '
    'reports use>", "description": "<one sentence describing the concept>"}'
)
MAX_NAME_WORDS = 8


@dataclass(frozen=True)
class LLMSettings:
    url: str
    model: str
    api_key_env: str
    cache_dir: Path
    timeout_s: float = 60.0
    max_retries: int = 3
    retry_backoff_s: float = 2.0
    max_reports: int = 20
    max_report_chars: int = 400

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> LLMSettings:
        missing = [k for k in ("url", "model") if not cfg.get(k)]
        if missing:
            keys = ", ".join(f"naming.llm.{k}" for k in missing)
            raise ConfigError(f"naming.method is llm but {keys} is not set")
        return cls(
            url=str(cfg["url"]).rstrip("/"),
            model=str(cfg["model"]),
            api_key_env=str(cfg["api_key_env"]),
            cache_dir=Path(cfg["cache_dir"]),
            timeout_s=float(cfg["timeout_s"]),
            max_retries=int(cfg["max_retries"]),
            retry_backoff_s=float(cfg["retry_backoff_s"]),
            max_reports=int(cfg["max_reports"]),
            max_report_chars=int(cfg["max_report_chars"]),
        )

    @property
    def endpoint(self) -> str:
        return f"{self.url}/chat/completions"


@dataclass(frozen=True)
class LLMName:
    name: str
    description: str


def build_prompt(reports: list[str], max_reports: int, max_report_chars: int) -> list[dict]:
    """Chat messages for one latent: its exemplars' reports (rank order, truncated)."""
    shown = []
    for text in reports[:max_reports]:
        text = " ".join(str(text).split())
        if len(text) > max_report_chars:
            text = text[: max_report_chars - 3].rstrip() + "..."
        shown.append(text)
    listing = "\n".join(f"{i}. {t}" for i, t in enumerate(shown, start=1))
    user = f"Reports of the {len(shown)} most activating images:\n{listing}\n\n{ANSWER_FORMAT}"
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def cache_key(model: str, messages: list[dict]) -> str:
    payload = json.dumps({"model": model, "messages": messages}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def parse_answer(content: str, endpoint: str) -> LLMName:
    """The strict answer format: a JSON object with a short name and a description
    (a Markdown code fence around it is tolerated)."""
    text = content.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, flags=re.DOTALL)
    if fenced:
        text = fenced.group(1)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        obj = None
    name = obj.get("name") if isinstance(obj, dict) else None
    description = obj.get("description") if isinstance(obj, dict) else None
    if not (isinstance(name, str) and name.strip() and isinstance(description, str)):
        raise InputError(
            f"LLM endpoint {endpoint}: the answer is not a JSON object with string 'name' and "
            f"'description' (got {content[:200]!r})"
        )
    name = " ".join(name.split())
    if len(name.split()) > MAX_NAME_WORDS:
        raise InputError(
            f"LLM endpoint {endpoint}: name {name!r} is longer than {MAX_NAME_WORDS} words"
        )
    return LLMName(name=name, description=" ".join(description.split()))


class ChatClient:
    """POST {url}/chat/completions with bounded retries on connection errors and 5xx."""

    def __init__(self, settings: LLMSettings) -> None:
        self.settings = settings
        self.api_key = os.environ.get(settings.api_key_env)
        self.calls = 0  # HTTP requests made (retries included)
        if not self.api_key:
            log.info(
                "environment variable %s is not set: calling %s without an API key",
                settings.api_key_env,
                settings.endpoint,
            )

    def complete(self, messages: list[dict]) -> str:
        """The assistant message's content; an InputError naming the endpoint otherwise."""
        s = self.settings
        body = json.dumps({"model": s.model, "messages": messages, "temperature": 0}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last_error = ""
        for attempt in range(s.max_retries + 1):
            if attempt:
                time.sleep(s.retry_backoff_s * 2 ** (attempt - 1))
            request = urllib.request.Request(s.endpoint, data=body, headers=headers)
            self.calls += 1
            try:
                with urllib.request.urlopen(request, timeout=s.timeout_s) as resp:
                    raw = resp.read()
            except urllib.error.HTTPError as err:
                if err.code < 500:
                    raise InputError(_client_error(s, err)) from None
                last_error = f"HTTP {err.code} {err.reason}"
            except (urllib.error.URLError, OSError) as err:  # refused, reset, timed out
                last_error = f"{type(err).__name__}: {getattr(err, 'reason', err)}"
            else:
                return _content_of(raw, s.endpoint)
            log.warning("LLM endpoint %s: %s (attempt %d)", s.endpoint, last_error, attempt + 1)
        raise InputError(
            f"LLM endpoint {s.endpoint}: no answer after {s.max_retries + 1} attempts "
            f"(last: {last_error})"
        )


def _client_error(s: LLMSettings, err: urllib.error.HTTPError) -> str:
    hint = ""
    if err.code in (401, 403):
        hint = f"; is the API key in the environment variable {s.api_key_env}?"
    elif err.code == 404:
        hint = f"; is naming.llm.url an OpenAI-compatible base URL and {s.model!r} served there?"
    return f"LLM endpoint {s.endpoint}: HTTP {err.code} {err.reason}{hint}"


def _content_of(raw: bytes, endpoint: str) -> str:
    try:
        reply = json.loads(raw)
        content = reply["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise InputError(
            f"LLM endpoint {endpoint}: malformed reply, expected JSON with "
            f"choices[0].message.content (got {raw[:200]!r})"
        ) from None
    if not isinstance(content, str):
        raise InputError(f"LLM endpoint {endpoint}: choices[0].message.content is not text")
    return content


class CachedNamer:
    """Names latents through the endpoint, answering repeated prompts from the disk cache."""

    def __init__(self, settings: LLMSettings, client: ChatClient | None = None) -> None:
        self.settings = settings
        self.client = client or ChatClient(settings)
        self.cache_hits = 0

    def cache_path(self, key: str) -> Path:
        return self.settings.cache_dir / f"{key}.json"

    def name(self, reports: list[str]) -> LLMName:
        s = self.settings
        messages = build_prompt(reports, s.max_reports, s.max_report_chars)
        key = cache_key(s.model, messages)
        path = self.cache_path(key)
        if path.exists():
            self.cache_hits += 1
            return _read_cached(path)
        content = self.client.complete(messages)
        answer = parse_answer(content, s.endpoint)  # raises before anything is cached
        write_json(
            {
                "model": s.model,
                "messages": messages,
                "content": content,
                "answer": {"name": answer.name, "description": answer.description},
            },
            path,
        )
        return answer


def _read_cached(path: Path) -> LLMName:
    try:
        answer = read_json(path)["answer"]
        return LLMName(str(answer["name"]), str(answer["description"]))
    except (ValueError, KeyError, TypeError):
        raise InputError(
            f"{path}: corrupt LLM cache entry (expected JSON with answer.name and "
            "answer.description); delete it to ask the endpoint again"
        ) from None


def mentions(reports, name: str) -> np.ndarray:
    """(D,) bool: the report contains the name's words in order (plural endings allowed).

    Used only when the LLM's name is not a vocabulary phrase; unlike the
    vocabulary's phrase table it does not see negations.
    """
    words = re.findall(r"[a-z0-9]+", name.lower())
    if not words:
        return np.zeros(len(reports), dtype=bool)
    stems = [
        w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w for w in words
    ]
    pattern = re.compile(
        r"\b" + r"[\s\-]+".join(re.escape(s) + r"(?:s|es)?" for s in stems) + r"\b", re.IGNORECASE
    )
    return np.array([bool(pattern.search(str(text))) for text in reports], dtype=bool)


def name_by_llm(corpus, candidates: dict[int, list[str]], params):
    """(concept rows, skipped latent → reason, call counts) naming each latent by the LLM.

    The name's confidence uses the reports namer's statistics: the name's mention
    indicator over the corpus (its vocabulary column when the name is a
    vocabulary phrase, else a text match) is scored by log-odds next to the
    vocabulary; the p-value compares it with random exemplar sets' best score, and
    stability is how often bootstrap resamples still rank it first.
    """
    from scipy import sparse

    from ..annotate.confidence import SummedScorer, set_sizes
    from ..evaluate.text import normalize_concept
    from ..runtime import progress
    from . import table
    from .assess import name_confidence, pad, scores_in_blocks
    from .reports import LogOddsTransform, corpus_sets

    settings = LLMSettings.from_config(params.llm)
    namer = CachedNamer(settings)
    latents, sets, skipped = corpus_sets(corpus, candidates)
    answers = [
        namer.name([corpus.reports[i] for i in rows]) for rows in progress(sets, desc="LLM naming")
    ]

    # one indicator column per name: the vocabulary's, or a new one for a free-text name
    column_of = {normalize_concept(p): j for j, p in enumerate(corpus.phrases)}
    extra = []
    for answer in answers:
        key = normalize_concept(answer.name)
        if key not in column_of:
            column_of[key] = len(corpus.phrases) + len(extra)
            extra.append(mentions(corpus.reports, answer.name))
    per_image = corpus.indicators
    if extra:
        per_image = sparse.hstack(
            [per_image, sparse.csr_matrix(np.stack(extra, axis=1).astype(float))]
        ).tocsr()
    mentioned = np.asarray(per_image.sum(axis=0)).ravel()
    transform = LogOddsTransform(mentioned, len(corpus), params.prior_strength)
    scorer = SummedScorer(per_image, transform)
    rows = []
    if len(latents):
        members = pad(sets)
        names = np.array([column_of[normalize_concept(a.name)] for a in answers])
        scores = scores_in_blocks(scorer, members, params.memory_mb)
        support = scores_in_blocks(SummedScorer(per_image), members, params.memory_mb)
        idx = np.arange(len(names))
        observed, backing = scores[idx, names], support[idx, names]
        p_value, stability = name_confidence(scorer, members, names, observed, latents, params)
        # a name fewer than min_support exemplar reports mention is not backed by them
        unbacked = backing < params.min_support
        sizes = set_sizes(members)
        p_value[unbacked], stability[unbacked] = 1.0, 0.0
        for i, (latent, answer) in enumerate(zip(latents, answers, strict=True)):
            rows.append(
                {
                    "latent": int(latent),
                    "name": answer.name,
                    "description": answer.description,
                    "method": "llm",
                    "score": float(scores[i, names[i]]),
                    "support": int(backing[i]),
                    "p_value": float(p_value[i]),
                    "stability": float(stability[i]),
                    "uninterpretable": table.uninterpretable(
                        p_value[i], backing[i], sizes[i], params
                    ),
                }
            )
    calls = {"llm_calls": namer.client.calls, "llm_cache_hits": namer.cache_hits}
    return rows, skipped, calls
