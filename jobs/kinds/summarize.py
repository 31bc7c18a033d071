"""`summarize`: a summary of a text, streamed token by token the way an LLM answers.

It shows live job output end to end without a model or a network: the summary is extractive (the
sentences whose words the text uses most, in their order), and its tokens are written to the
`output` stream at a set pace, as a language model's client would hand them over. Benchmarks use
it as a streaming job.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections import Counter
from collections.abc import AsyncIterator

from pydantic import BaseModel, ConfigDict, Field

from jobcast.kind import JobContext, Kind

STOPWORDS = frozenset(
    (
        *("a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "has", "have", "in", "is"),
        *("it", "its", "of", "on", "or", "that", "the", "this", "to", "was", "were", "will", "with"),
    )
)
TOPICS = (
    *("revenue", "latency", "the queue", "the warehouse", "customers", "the rollout", "storage"),
    "support",
)
VERBS = ("grew", "fell", "held steady", "doubled", "slowed", "recovered", "peaked", "improved")
REASONS = (
    "after the spring release",
    "as more teams moved their reports over",
    "because the nightly batch ran twice",
    "while the new region came online",
    "despite a quiet holiday week",
    "once caching was turned on",
)


class SummarizeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(
        default=None,
        max_length=200_000,
        description="The text to summarize; without it, a generated report of `paragraphs` paragraphs.",
    )
    paragraphs: int = Field(default=12, ge=1, le=20_000, description="Paragraphs of the generated report.")
    seed: int = Field(default=1, ge=0, le=2**31, description="Which generated report.")
    max_words: int = Field(default=120, ge=1, le=1_000_000, description="Longest summary, in words.")
    tokens_per_s: float = Field(
        default=40, ge=0, le=100_000, description="How fast the summary is written; 0: all in one write."
    )


def generated_report(paragraphs: int, seed: int) -> str:
    rng = random.Random(seed)
    out = []
    for _ in range(paragraphs):
        sentences = [
            f"{rng.choice(TOPICS).capitalize()} {rng.choice(VERBS)} {rng.choice(REASONS)}."
            for _ in range(rng.randint(3, 6))
        ]
        out.append(" ".join(sentences))
    return "\n\n".join(out)


def sentences_of(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]


def summary_of(text: str, max_words: int) -> tuple[str, int]:
    """The summary, and how many sentences it was picked from."""
    sentences = sentences_of(text)
    words = Counter(w for w in re.findall(r"[a-z']+", text.lower()) if w not in STOPWORDS)

    def score(sentence: str) -> float:
        found = [w for w in re.findall(r"[a-z']+", sentence.lower()) if w not in STOPWORDS]
        return sum(words[w] for w in found) / (len(found) or 1)

    ranked = sorted(range(len(sentences)), key=lambda i: score(sentences[i]), reverse=True)
    picked: list[int] = []
    length = 0
    for i in ranked:
        n = len(sentences[i].split())
        if picked and length + n > max_words:
            continue
        picked.append(i)
        length += n
        if length >= max_words:
            break
    summary = " ".join(sentences[i] for i in sorted(picked))
    cut = summary.split()
    if len(cut) > max_words:
        summary = " ".join(cut[:max_words]) + "…"
    return summary, len(sentences)


def tokens_of(text: str) -> list[str]:
    """Pieces like a language model's tokens: words with their leading space, long ones split."""
    tokens = []
    for match in re.finditer(r"\s*\S+", text):
        word = match.group()
        while len(word) > 6:
            tokens.append(word[:4])
            word = word[4:]
        tokens.append(word)
    return tokens


async def paced(tokens: list[str], tokens_per_s: float) -> AsyncIterator[str]:
    """The tokens at a steady pace, as a model's streaming client yields them."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for index, token in enumerate(tokens):
        if tokens_per_s:
            delay = start + index / tokens_per_s - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        yield token


async def run(ctx: JobContext, params: SummarizeParams) -> dict[str, int]:
    text = params.text if params.text is not None else generated_report(params.paragraphs, params.seed)
    summary, sentences = summary_of(text, params.max_words)
    ctx.log.info("read %d sentences, %d words", sentences, len(text.split()))
    tokens = tokens_of(summary)
    ctx.log.info("writing a summary of %d words as %d tokens", len(summary.split()), len(tokens))
    out = ctx.output("output")
    if not params.tokens_per_s:
        await out.write(summary)
        ctx.log.info("done")
        return {"tokens": len(tokens), "characters": len(summary), "sentences": sentences}
    written = 0

    async def counted() -> AsyncIterator[str]:
        nonlocal written
        async for token in paced(tokens, params.tokens_per_s):
            written += 1
            yield token
            if written % 50 == 0:
                await ctx.progress.update(written, len(tokens), f"{written} of {len(tokens)} tokens")

    await out.pipe(counted())
    await ctx.progress.update(len(tokens), len(tokens), "summary written")
    ctx.log.info("done")
    return {"tokens": len(tokens), "characters": len(summary), "sentences": sentences}


KIND = Kind(
    name="summarize",
    title="Summarize: a summary streamed token by token",
    description="Summarizes a text (or a generated report) and writes the summary to the `output` "
    "stream token by token, as a language model would: watch it on the job's page or with "
    "`curl -N .../output/output?follow=1`.",
    params=SummarizeParams,
    run=run,
    max_attempts=3,
    timeout_s=3600,
)
