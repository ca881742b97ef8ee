"""What a trace records: the prompt as the model saw it, what the budget dropped, every
attempt and its verdict, the retries reported while the batch runs; and how a trace is
cut when it must be."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from playhouse.explain import Attempt, Trace, decode_trace, shortened, to_json
from playhouse.generation.batch import Batch
from playhouse.generation.completion import complete, make_items
from playhouse.generation.progress import Retry, reporting
from playhouse.messages import ChainComment, GenerationRequest
from playhouse.personas import Persona
from tests.unit.test_completion import ScriptedModel, reply, spez

__all__ = ["spez"]


def deep(n: int, words: int = 40) -> GenerationRequest:
    chain = tuple(ChainComment(author=("ann", "bob")[i % 2],
                               text=f"comment{i} " + "word " * words) for i in range(n))
    return msgspec.structs.replace(reply(1), chain=chain)


def test_a_trace_holds_the_prompt_the_dropped_ancestors_and_each_attempt(
    spez: Persona,
) -> None:
    request = deep(12)
    model = ScriptedModel([["no end tag here"], ["a fine answer<|eor|>"]])
    items, failed = make_items([("k", request)], spez, model)
    assert not failed
    retries: list[Retry] = []

    def told(batch: Sequence[Retry]) -> None:
        retries.extend(batch)

    with reporting(told):
        (outcome,) = complete(model, Batch.from_items("Spez", items), spez, seed=3)
    assert outcome.ok and outcome.text == "a fine answer"
    trace = outcome.trace
    assert trace is not None
    assert trace.prompt == items[0].prompt
    assert trace.chain == 12 and 0 < trace.dropped < 12
    # The dropped ones are the oldest, and the model never saw them.
    for i, comment in enumerate(request.chain):
        assert (comment.text in trace.prompt) == (i >= trace.dropped)
    # The cut is right after the post's header: the first kept comment starts there.
    after = trace.prompt[trace.cut_at:]
    assert after.startswith("<|so")
    assert after.split("|>", 1)[1].startswith(f"comment{trace.dropped} ")
    assert trace.prompt[:trace.cut_at].endswith("<|eost|>")
    assert trace.budget_tokens > 0 and trace.prompt_tokens <= trace.budget_tokens
    assert [(a.number, a.accepted, a.reason) for a in trace.attempts] == [
        (1, False, "no_end_tag"), (2, True, "")]
    assert [a.seed for a in trace.attempts] == [3, 3 + 7919]
    assert trace.attempts[0].output == "no end tag here"
    assert dict(trace.params)["temperature"] == spez.generation.temperature
    assert trace.seed == 3 and trace.engine == "ScriptedModel"
    assert retries == [Retry("k", 2, spez.generation.max_attempts, "no_end_tag")]


def test_a_request_that_fits_drops_nothing_and_reports_no_retry(spez: Persona) -> None:
    model = ScriptedModel([["yes<|eor|>"]])
    items, _ = make_items([("k", reply(1))], spez, model)
    retries: list[Retry] = []
    with reporting(retries.extend):
        (outcome,) = complete(model, Batch.from_items("Spez", items), spez)
    assert outcome.trace is not None
    assert (outcome.trace.dropped, outcome.trace.cut_at) == (0, 0)
    assert retries == []


def test_a_long_trace_is_cut_to_its_limit_keeping_the_prompts_end() -> None:
    prompt = "<|soss r/x|>" + "y" * 50_000 + "<|sor u/Bot|>"
    trace = Trace(prompt=prompt, attempts=(Attempt(number=1, output="z" * 4000),))
    cut = shortened(trace, 10_000)
    assert len(to_json(cut)) <= 10_000
    assert cut.truncated and cut.prompt.endswith("<|sor u/Bot|>")
    assert shortened(Trace(prompt="short"), 10_000) == Trace(prompt="short")
    assert decode_trace(to_json(cut)) == cut
    assert decode_trace("not json") is None


def test_what_was_removed_since_is_taken_out_of_an_explanation_lined_up_from_the_end() -> None:
    from playhouse.explain import REMOVED_SINCE, Ancestor, CallInfo, Explanation, without_gone

    x = Explanation(
        request_id="r", persona="Spez", kind="reply", room="Tech", thread_id="t",
        answer_id="a", state="done",
        call=CallInfo(reason="mention", by="cleo", answered="c3", answered_author="cleo"),
        trace=Trace(prompt="<|sot|>the secret<|eot|>", cut_at=7, attempts=(
            Attempt(number=1, output="the secret again", reason="near_copy"),
            Attempt(number=2, output="fine", accepted=True))),
        # the chain sent: the oldest of the four stored ancestors was left out
        ancestors=(Ancestor(author="bob", text="two"), Ancestor(author="ann", text="three"),
                   Ancestor(author="cleo", text="the secret")))
    assert without_gone(x, gone=["", "", "", ""], answered="", post_gone=False) is x
    out = without_gone(x, gone=["[removed]", "[removed]", "", "[removed]"],
                       answered="[removed]", post_gone=False)
    assert [(a.author, a.text) for a in out.ancestors] == [
        ("[removed]", "[removed]"), ("ann", "three"), ("[removed]", "[removed]")]
    assert out.call is not None and (out.call.by, out.call.answered_author) == (
        "[removed]", "[removed]")
    assert out.trace is not None and out.trace.prompt == "" and out.trace.cut_at == 0
    assert [(a.output, a.reason) for a in out.trace.attempts] == [("", "near_copy"),
                                                                  ("", "")]
    assert out.withheld == REMOVED_SINCE and "secret" not in to_json(out)
    # The post alone gone: the prompt goes (its title heads it), the ancestors stay.
    post = without_gone(x, gone=[], answered="", post_gone=True)
    assert post.trace is not None and post.trace.prompt == ""
    assert post.ancestors == x.ancestors and post.call == x.call
