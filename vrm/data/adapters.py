"""Adapters that turn each published preference file into normalized pairs.

Every adapter takes the source's files and a PairCollector, counts the rows it reads in the
collector's report and passes each candidate pair to the collector, which drops empty and
identical sides. Source-specific drops (ties, prefix mismatches) are counted here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
import re

from vrm.data.pairs import PairCollector, render_conversation, shared_prefix_length
from vrm.data.readers import (
    Record,
    format_error,
    optional_str,
    read_json,
    read_json_records,
    read_jsonl,
    records_from_list,
    require_field,
    require_str,
    require_type,
)
from vrm.data.schema import DROP_PREFIX_MISMATCH, DROP_TIE, DROP_TRUNCATED_DIALOGUE, DataFormatError


def add_note(collector: PairCollector, note: str, count: int = 1) -> None:
    notes = collector.report.notes
    notes[note] = notes.get(note, 0) + count


def require_choice(record: Record, field: str, choices: Sequence) -> object:
    """Return the value of `field` after checking that it is one of `choices`."""
    value = require_field(record, field)
    # bool is a subclass of int, so `True in (0, 1)` would pass without the type check.
    if isinstance(value, bool) or value not in choices:
        allowed = ", ".join(repr(choice) for choice in choices)
        raise format_error(record, f"field {field!r} is {value!r}, expected one of {allowed}")
    return value


def require_messages(record: Record, field: str) -> list[dict]:
    """Return a list of chat messages, each an object with string "role" and "content"."""
    messages = require_type(record, field, list, "a list of {role, content} messages")
    for position, message in enumerate(messages):
        is_message = (
            isinstance(message, dict)
            and isinstance(message.get("role"), str)
            and isinstance(message.get("content"), str)
        )
        if not is_message:
            raise format_error(
                record, f"message {position} of field {field!r} is not an object with string 'role' and 'content'"
            )
    return messages


# --- hh-rlhf -----------------------------------------------------------------------------

HH_ASSISTANT_MARKER = "\n\nAssistant:"
NOTE_NO_ASSISTANT_TURN = "transcripts without an assistant turn (counted as prefix mismatch)"


def split_hh_transcripts(chosen: str, rejected: str) -> tuple[str, str, str] | None:
    """Split two hh-rlhf transcripts into (prompt, chosen response, rejected response).

    The prompt is everything up to and including the last "\\n\\nAssistant:" of each
    transcript. Returns None when the two prompts differ, because then the responses do not
    answer the same conversation (this also catches a rejected transcript with more turns).
    """
    chosen_cut = chosen.rfind(HH_ASSISTANT_MARKER)
    rejected_cut = rejected.rfind(HH_ASSISTANT_MARKER)
    if chosen_cut < 0 or rejected_cut < 0:
        return None
    prompt_end = chosen_cut + len(HH_ASSISTANT_MARKER)
    prompt = chosen[:prompt_end]
    if rejected[: rejected_cut + len(HH_ASSISTANT_MARKER)] != prompt:
        return None
    return prompt, chosen[prompt_end:], rejected[prompt_end:]


def add_hh_rlhf_record(record: Record, collector: PairCollector, row_id: str, aspect: str, subset: str) -> None:
    """Add the pair of one hh-rlhf row ({"chosen", "rejected"} transcripts)."""
    collector.report.rows_read += 1
    chosen = require_str(record, "chosen")
    rejected = require_str(record, "rejected")
    parts = split_hh_transcripts(chosen, rejected)
    if parts is None:
        if HH_ASSISTANT_MARKER not in chosen or HH_ASSISTANT_MARKER not in rejected:
            add_note(collector, NOTE_NO_ASSISTANT_TURN)
        collector.drop(DROP_PREFIX_MISMATCH)
        return
    prompt, chosen_response, rejected_response = parts
    collector.add(row_id, prompt, chosen_response, rejected_response, aspect=aspect, subset=subset)


def read_hh_rlhf_files(
    files: Sequence[Path], collector: PairCollector, aspect: str, subset: str, row_prefix: str = ""
) -> None:
    """Read hh-rlhf JSON Lines files (also .gz).

    A pair's row id is `row_prefix` followed by its 1-based line number. With several files
    the file name comes before the line number, so ids stay unique.
    """
    for path in files:
        prefix = row_prefix if len(files) == 1 else f"{row_prefix}{path.name}/"
        for record in read_jsonl(path):
            add_hh_rlhf_record(record, collector, f"{prefix}{record.line}", aspect, subset)


# --- PandaLM -----------------------------------------------------------------------------

NOTE_BOOLEAN_RESPONSES = "boolean responses converted to text"
NOTE_NO_MAJORITY = "rows whose three annotators all disagree (counted as tie)"


def majority_vote(votes: Sequence[int]) -> int | None:
    """Return the value at least two of three votes share, or None when all three differ."""
    value, count = Counter(votes).most_common(1)[0]
    return value if count >= 2 else None


def pandalm_response(record: Record, field: str, collector: PairCollector) -> str:
    # testset-v1.json (commit 3871806) stores six responses as the JSON literal true. The
    # other responses to those prompts read "True." or "The statement is correct.", so a
    # boolean becomes the text "True" or "False".
    value = require_type(record, field, (str, bool), "a string")
    if isinstance(value, bool):
        add_note(collector, NOTE_BOOLEAN_RESPONSES)
        return str(value)
    return value


def read_pandalm(files: Sequence[Path], collector: PairCollector) -> None:
    """Read the PandaLM test set: a JSON list with response1/2 and three annotator votes.

    The label is the vote at least two annotators share (1: response1 better, 2: response2,
    0: tie). A 0 majority and a three-way split are ties. On testset-v1.json this rule gives
    the 894 pairs and 105 ties the data README states, and no three-way split occurs.
    The prompt is the instruction, followed by a blank line and the input when the input
    is not blank, which is how RM-Bench writes the prompts the two sets share.
    The subset is the record's task tag, `motivation_app` (for example "Grammarly").
    """
    for path in files:
        for record in read_json_records(path):
            collector.report.rows_read += 1
            votes = [require_choice(record, f"annotator{number}", (0, 1, 2)) for number in (1, 2, 3)]
            instruction = require_str(record, "instruction")
            input_text = optional_str(record, "input")
            response1 = pandalm_response(record, "response1", collector)
            response2 = pandalm_response(record, "response2", collector)
            row_id = require_type(record, "idx", (int, str), "an integer id")

            label = majority_vote(votes)
            if label is None:
                add_note(collector, NOTE_NO_MAJORITY)
            if label is None or label == 0:
                collector.drop(DROP_TIE)
                continue

            prompt = "\n\n".join(part for part in (instruction.strip(), input_text.strip()) if part)
            chosen, rejected = (response1, response2) if label == 1 else (response2, response1)
            subset = optional_str(record, "motivation_app")
            collector.add(str(row_id), prompt, chosen, rejected, subset=subset)


# --- Auto-J ------------------------------------------------------------------------------


def read_autoj(files: Sequence[Path], collector: PairCollector) -> None:
    """Read Auto-J pairwise test data (JSON Lines; label 0: response 1 better, 1: response 2, 2: tie).

    The subset is the scenario; a pair's row id is its 1-based line number.
    """
    for path in files:
        for record in read_jsonl(path):
            collector.report.rows_read += 1
            label = require_choice(record, "label", (0, 1, 2))
            prompt = require_str(record, "prompt")
            response1 = require_str(record, "response 1")
            response2 = require_str(record, "response 2")
            scenario = optional_str(record, "scenario")
            if label == 2:
                collector.drop(DROP_TIE)
                continue
            chosen, rejected = (response1, response2) if label == 0 else (response2, response1)
            collector.add(str(record.line), prompt, chosen, rejected, subset=scenario)


# --- LLMEval2 ----------------------------------------------------------------------------

_DIALOGUE_TURN = re.compile(r"\n\n(user|assistant): ")
NOTE_DIALOGUES_SPLIT = "dialogue rows split at the shared prefix"


def parse_dialogue(text: str) -> list[dict] | None:
    """Parse "user: ...\\n\\nassistant: ..." text into messages; None unless it starts with "user: "."""
    if not text.startswith("user: "):
        return None
    parts = _DIALOGUE_TURN.split("\n\n" + text)
    return [{"role": parts[index], "content": parts[index + 1]} for index in range(1, len(parts), 2)]


def split_dialogues(first: str, second: str) -> tuple[str, str, str] | str:
    """Split two dialogues into (prompt, first continuation, second continuation).

    The prompt is the messages both dialogues share, cut back to end with a user message.
    Each continuation is the rest of its dialogue, rendered with render_conversation.
    Returns a drop reason instead when a dialogue is truncated or the first turns differ.
    """
    first_messages = parse_dialogue(first)
    second_messages = parse_dialogue(second)
    if first_messages is None or second_messages is None:
        return DROP_TRUNCATED_DIALOGUE
    shared = shared_prefix_length(first_messages, second_messages)
    while shared > 0 and first_messages[shared - 1]["role"] != "user":
        shared -= 1
    if shared == 0:
        return DROP_PREFIX_MISMATCH
    prompt = render_conversation(first_messages[:shared])
    first_rest = first_messages[shared:]
    second_rest = second_messages[shared:]
    first_text = render_conversation(first_rest) if first_rest else ""
    second_text = render_conversation(second_rest) if second_rest else ""
    return prompt, first_text, second_text


def read_llmeval2(files: Sequence[Path], collector: PairCollector) -> None:
    """Read LLMEval2 (JSON Lines despite the .json name; human in model1, model2, TIE).

    The subset is the `dataset` tag. Rows with an empty query (all of them mt-bench) hold a
    whole two-turn dialogue in each response, as "user: ...\\n\\nassistant: ..." text. For
    those, the dialogue messages both responses share (in this file always the first user
    turn) become the prompt, and each response becomes the rest of its dialogue, rendered
    by render_conversation ("Assistant: ...\\n\\nUser: ...\\n\\nAssistant: ..."). A response
    that does not start with "user: " was cut off at the start (it begins mid-answer or at a
    later turn), so its row has no recoverable prompt and is dropped as truncated dialogue.
    A pair's row id is its 1-based line number.
    """
    for path in files:
        for record in read_jsonl(path):
            collector.report.rows_read += 1
            human = require_choice(record, "human", ("model1", "model2", "TIE"))
            query = require_str(record, "query")
            response1 = require_str(record, "response1")
            response2 = require_str(record, "response2")
            dataset = optional_str(record, "dataset")
            if human == "TIE":
                collector.drop(DROP_TIE)
                continue

            if query.strip():
                prompt = query
            else:
                parts = split_dialogues(response1, response2)
                if isinstance(parts, str):
                    collector.drop(parts)
                    continue
                prompt, response1, response2 = parts
                add_note(collector, NOTE_DIALOGUES_SPLIT)

            chosen, rejected = (response1, response2) if human == "model1" else (response2, response1)
            collector.add(str(record.line), prompt, chosen, rejected, subset=dataset)


# --- BIG-bench HHH -----------------------------------------------------------------------


def read_bigbench_hhh(files: Sequence[Path], collector: PairCollector) -> None:
    """Read BIG-bench hhh_alignment task files, one pair per example.

    Each example's `target_scores` maps two response texts to 1 (chosen) and 0 (rejected).
    The aspect is the task file's folder name (helpful, honest, harmless, other).
    """
    for path in files:
        aspect = path.parent.name
        document = read_json(path)
        if not isinstance(document, dict) or "examples" not in document:
            raise DataFormatError(
                path,
                None,
                "missing field 'examples'",
                "Pass one of the task.json files inside the helpful, honest, harmless or other folder",
            )
        for record in records_from_list(document["examples"], path, "examples"):
            collector.report.rows_read += 1
            prompt = require_str(record, "input")
            scores = require_type(record, "target_scores", dict, "an object of response: score")
            chosen = [text for text, score in scores.items() if score == 1]
            rejected = [text for text, score in scores.items() if score == 0]
            if len(scores) != 2 or len(chosen) != 1 or len(rejected) != 1:
                raise format_error(record, f"target_scores has scores {sorted(scores.values())}, expected one 1 and one 0")
            collector.add(f"{aspect}/{record.index}", prompt, chosen[0], rejected[0], aspect=aspect)


# --- FineGrainedRLHF QA feedback ---------------------------------------------------------

# The six values of `preference`, in file order: (first prediction, second prediction).
QA_FEEDBACK_COMPARISONS = ((1, 2), (1, 3), (1, 4), (2, 3), (2, 4), (3, 4))


def join_passage_sentences(sentences: Sequence[str]) -> str:
    """Join a passage's sentences with single spaces, adding none after a trailing newline."""
    text = ""
    for sentence in sentences:
        if text and not text.endswith("\n"):
            text += " "
        text += sentence
    return text


def qa_feedback_prompt(question: str, passages: Sequence[Sequence[str]]) -> str:
    """Build the QA-feedback policy input from a question and its [title, sentence, ...] passages.

    The format is "question: Q context: wikipage: TITLE text: PASSAGE | wikipage: ...", the
    `text` field of dev.json in the same folder. Rebuilt this way, 488 of the 500 questions
    of dev_feedback.json match dev.json exactly. The other 12 differ by one space between
    two sentences, because the sentence split in dev_feedback.json does not keep it.
    """
    contexts = [f"wikipage: {passage[0]} text: {join_passage_sentences(passage[1:])}" for passage in passages]
    return f"question: {question} context: {' | '.join(contexts)}"


def require_passages(record: Record) -> list[list[str]]:
    passages = require_type(record, "passages", list, "a list of [title, sentence, ...] lists")
    for position, passage in enumerate(passages):
        if not (isinstance(passage, list) and passage and all(isinstance(part, str) for part in passage)):
            raise format_error(record, f"passage {position} is not a non-empty list of strings")
    return passages


def read_finegrained_qa(files: Sequence[Path], collector: PairCollector) -> None:
    """Read FineGrainedRLHF QA feedback: four predictions per question and six preferences.

    Preference values: 1 (first prediction better), 2 (second better), 0 (no preference,
    dropped as tie). The prompt is qa_feedback_prompt(question, passages). A pair's row id
    is "{record index}/{first}v{second}", for example "17/1v3".
    """
    for path in files:
        for record in read_json_records(path):
            collector.report.rows_read += 1
            question = require_str(record, "question")
            passages = require_passages(record)
            predictions = {number: require_str(record, f"prediction {number}") for number in (1, 2, 3, 4)}
            preferences = require_type(record, "preference", list, "a list of six integers")
            if len(preferences) != len(QA_FEEDBACK_COMPARISONS) or any(
                isinstance(value, bool) or value not in (0, 1, 2) for value in preferences
            ):
                raise format_error(record, f"field 'preference' is {preferences!r}, expected six values in 0, 1, 2")

            prompt = qa_feedback_prompt(question, passages)
            for (first, second), preference in zip(QA_FEEDBACK_COMPARISONS, preferences):
                if preference == 0:
                    collector.drop(DROP_TIE)
                    continue
                better, worse = (first, second) if preference == 1 else (second, first)
                row_id = f"{record.index}/{first}v{second}"
                collector.add(row_id, prompt, predictions[better], predictions[worse])


# --- RM-Bench ----------------------------------------------------------------------------

RM_BENCH_STYLES = ("concise", "detailed", "detailed markdown")


def rm_bench_difficulty(chosen_style: int, rejected_style: int) -> str:
    """Name the RM-Bench difficulty of comparing chosen style i with rejected style j.

    Styles are indexed 0 concise, 1 detailed, 2 detailed markdown. In the 3x3 matrix with
    chosen styles as rows and rejected styles as columns, the THU-KEG/RM-Bench README
    ("how to compute the accuracy") defines hard accuracy over the upper-right triangle
    (i < j: the chosen response is less styled than the rejected one), normal over the
    diagonal and easy over the lower-left triangle (i > j).
    """
    if chosen_style < rejected_style:
        return "hard"
    if chosen_style == rejected_style:
        return "normal"
    return "easy"


def require_styled_responses(record: Record, field: str) -> list[str]:
    responses = require_type(record, field, list, "a list of three strings")
    if len(responses) != len(RM_BENCH_STYLES) or not all(isinstance(text, str) for text in responses):
        raise format_error(record, f"field {field!r} must hold three strings ({', '.join(RM_BENCH_STYLES)})")
    return responses


def read_rm_bench(files: Sequence[Path], collector: PairCollector) -> None:
    """Read RM-Bench domain files into all nine style combinations per prompt.

    The domain comes from the file name ("chat_filtered.json" is chat). For chosen style i
    and rejected style j, the aspect is rm_bench_difficulty(i, j), the subset
    "{domain}/{i}{j}" and the row id "{domain}/{id}/{i}{j}".
    """
    for path in files:
        domain = path.stem.removesuffix("_filtered")
        for record in read_json_records(path):
            collector.report.rows_read += 1
            record_id = require_type(record, "id", (str, int), "a string or integer id")
            prompt = require_str(record, "prompt")
            chosen = require_styled_responses(record, "chosen")
            rejected = require_styled_responses(record, "rejected")
            for chosen_style in range(len(RM_BENCH_STYLES)):
                for rejected_style in range(len(RM_BENCH_STYLES)):
                    styles = f"{chosen_style}{rejected_style}"
                    collector.add(
                        f"{domain}/{record_id}/{styles}",
                        prompt,
                        chosen[chosen_style],
                        rejected[rejected_style],
                        aspect=rm_bench_difficulty(chosen_style, rejected_style),
                        subset=f"{domain}/{styles}",
                    )


# --- RMB ---------------------------------------------------------------------------------

RMB_GOALS = {"helpfulness", "harmlessness"}


def rmb_aspect(path: Path, category_path: str) -> str:
    """Return "helpfulness" or "harmlessness" from the file's top folder, else from category_path."""
    for part in (*path.parts, *category_path.split("/")):
        if part.lower() in RMB_GOALS:
            return part.lower()
    return ""


def require_answer(record: Record, field: str) -> str:
    response = require_type(record, field, dict, "an object with an 'answer' string")
    answer = response.get("answer")
    if not isinstance(answer, str):
        raise format_error(record, f"field '{field}.answer' is missing or not a string")
    return answer


def read_rmb_pairwise(files: Sequence[Path], collector: PairCollector) -> None:
    """Read the RMB Pairwise_set: chosen.answer against reject.answer.

    The prompt is conversation_input rendered by render_conversation; the subset is
    category_path (the file stem when it is missing); the row id is pair_uid.
    """
    for path in files:
        for record in read_json_records(path):
            collector.report.rows_read += 1
            prompt = render_conversation(require_messages(record, "conversation_input"))
            chosen = require_answer(record, "chosen")
            rejected = require_answer(record, "reject")
            row_id = require_type(record, "pair_uid", (str, int), "a string or integer id")
            category_path = optional_str(record, "category_path") or path.stem
            aspect = rmb_aspect(path, category_path)
            collector.add(str(row_id), prompt, chosen, rejected, aspect=aspect, subset=category_path)


def read_rmb_best_of_n(files: Sequence[Path], collector: PairCollector) -> None:
    """Read the RMB BoN_set: one pair of bon_best against each answer of loser_list.

    All pairs of one record share the subset "{category_path}/{bon_uid}", so a best-of-N
    metric can regroup them. The row id is "{bon_uid}/{loser index}".
    """
    for path in files:
        for record in read_json_records(path):
            collector.report.rows_read += 1
            prompt = render_conversation(require_messages(record, "conversation_input"))
            best = require_answer(record, "bon_best")
            losers = require_type(record, "loser_list", list, "a list of objects with an 'answer' string")
            group_id = require_type(record, "bon_uid", (str, int), "a string or integer id")
            category_path = optional_str(record, "category_path") or path.stem
            aspect = rmb_aspect(path, category_path)
            for position, loser in enumerate(losers):
                if not (isinstance(loser, dict) and isinstance(loser.get("answer"), str)):
                    raise format_error(record, f"loser_list[{position}] is not an object with an 'answer' string")
                collector.add(
                    f"{group_id}/{position}",
                    prompt,
                    best,
                    loser["answer"],
                    aspect=aspect,
                    subset=f"{category_path}/{group_id}",
                )
