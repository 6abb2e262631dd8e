"""Training data of the critique model: corrupted questions, graded solutions, a balanced split.

Question task. The positives are well-posed questions (the records of mathlm.data); the negatives
are the same questions corrupted on purpose by `corrupt_question(record, kind, rng)`:

    drop_quantity  a number the solution needs (it appears in the record's programs) becomes vague:
                   "Nina has 26 eggs and finds 17 more." -> "Nina has some eggs and finds 17 more."
                   "If 3x + 4 = 7, what is x?" -> "If 3x + 4 = some number, what is x?"
                   "Find the 7th term of 14, 19, 24, ..." -> "Find a later term of 14, 19, 24, ..."
    contradiction  a statement that conflicts with the data is added:
                   an equation restated with another value ("If 3x + 4 = 7 and also 3x + 4 = 9, ..."),
                   a possession restated ("Nina has 26 eggs ... At the same moment, Nina has exactly
                   31 eggs."), or a false claim about a given number ("Note that 26 is an odd number.")
    unanswerable   the question asks for something the data does not determine: the final question
                   is replaced ("How old is Nina?", "What color are the eggs?", "What is the value
                   of z?") or an undefined quantity is added ("Then add z to your answer. What
                   number do you get?")
    swap_entity    the question asks about a person or object the data never mentions:
                   "How many eggs does Nina have in total?" -> "How many eggs does Lena have in total?"

Each returns None when it does not apply to the record (no number a program uses, no person or
object named twice), and is deterministic given the rng state. A corrupted question is a negative
(label 0, answer `UNANSWERABLE`). Numbers inside a listed sequence ("14, 19, 24, ...") are never
dropped or changed: the rest of the listing determines them.

Solution task. Graded samples `{"question", "solution", "correct"}` (the pipeline's RFT samples,
graded by mathlm.grading) give positives and negatives. `synthetic_graded_samples` makes them
from the records' reference solutions plus `corrupt_solution` (a final answer that disagrees with
the work, or a question number copied wrong into the work) for when sampled ones are scarce.

Critique examples are dicts {task: "question"|"solution", question, solution (None for the
question task), label: 1 good / 0 bad, source, group}; `group` is the normalized original question,
so a question, its corruptions and its solutions always land in the same split.
"""
from __future__ import annotations

import random
import re
from typing import Iterable, Sequence

from .data.contexts import ITEMS, PEOPLE
from .data.format import parse_blocks
from .data.similarity import normalize_question
from .grading import boxed_spans

TASKS = ("question", "solution")
CORRUPTIONS = ("drop_quantity", "contradiction", "unanswerable", "swap_entity")
SOLUTION_CORRUPTIONS = ("final_answer", "copied_number")
UNANSWERABLE = "unanswerable"

# A number as the question states it: 12, -4, 2/3 (not a coefficient 3x, an exponent x^2, an
# ordinal 7th, a factor 6(x - 1), a decimal or a name like f').
_NUMBER = re.compile(r"(?<![\w.^/'])-?\d+(?:/\d+)?(?![\w^/(]|\.\d)")
_ORDINAL_TERM = re.compile(r"\bthe (\d+)(?:st|nd|rd|th) term\b")
_TERM_NUMBER = re.compile(r"\bterm number (\d+)\b")
_LISTING = re.compile(r"-?\d+(?:/\d+)?(?:, -?\d+(?:/\d+)?)+, \.\.\.")
_SENTENCE_BREAK = re.compile(r"(?<=[.?!])\s+(?=[A-Z])")
_MATH_TOKEN = re.compile(r"^(?:[-+*/]|-?\d*\(?-?\d*[xy]?(?:\^\d+)?\)?)$")
_PLAIN_NUMBER = re.compile(r"^-?\d+(?:/\d+)?$")
_POSSESSION = re.compile(r"\b([A-Z][a-z]+) (has|had) (\d+) ([a-z]+)\b")

# Objects the generators name besides ITEMS (swap_entity's replacements come from here too).
_OTHER_OBJECTS = ("pens", "tickets", "notebooks", "cups", "toys", "bottles", "shirts")
_UNDEFINED = ("z", "w")
# Words after a number that are not what it counts ("from 0 to 3"): the number becomes "some number".
_NOT_NOUNS = frozenset("to and or of out is are divided by times from in with as than then for at when over into "
                       "if a the".split())
_ORDINAL_WORDS = ("first", "second", "third", "fourth", "fifth", "sixth")


# ------------------------------------------------------------------------------------------ numbers


def _program_integers(record: dict) -> set[int] | None:
    """Integers written in the record's PoT and mixed programs; None when it has no program."""
    codes = [code for field in ("pot", "mixed") for code, _ in parse_blocks(record.get(field) or "")]
    if not codes:
        return None
    return {int(n) for code in codes for n in re.findall(r"\d+", code)}


def _listing_spans(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in _LISTING.finditer(text)]


def _inside(pos: int, spans: Iterable[tuple[int, int]]) -> bool:
    return any(a <= pos < b for a, b in spans)


def _number_spans(question: str) -> list[tuple[int, int]]:
    """Spans of the stated numbers (see _NUMBER) outside sequence listings and A^(-1)."""
    listings = _listing_spans(question)
    return [m.span() for m in _NUMBER.finditer(question)
            if not _inside(m.start(), listings) and not question[:m.start()].endswith("^(")]


def _needed(number_text: str, program: set[int] | None) -> bool:
    """True when every integer in the number appears in the programs (or there is no program)."""
    return program is None or all(int(d) in program for d in re.findall(r"\d+", number_text))


def _other_value(rng: random.Random, text: str) -> str:
    """A different number of the same shape: an integer of the same sign and about the same size,
    or a fraction with another numerator."""
    if "/" in text:
        num, den = text.split("/")
        sign, num = ("-", num[1:]) if num.startswith("-") else ("", num)
        new = int(num)
        while new == int(num):
            new = rng.randint(1, max(2 * int(num), int(den)))
        return f"{sign}{new}/{den}"
    value = int(text)
    size = abs(value)
    while True:
        new = size + rng.choice([-1, 1]) * rng.randint(1, max(3, size // 3))
        if new >= 0 and new != size:
            return str(-new if value < 0 else new)


def _sentences(question: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence."""
    starts = [0] + [m.end() for m in _SENTENCE_BREAK.finditer(question)]
    ends = [m.start() for m in _SENTENCE_BREAK.finditer(question)] + [len(question)]
    return list(zip(starts, ends))


# ------------------------------------------------------------------------------------------ corruptions


def _drop_quantity(record: dict, rng: random.Random):
    q, program = record["question"], _program_integers(record)
    edits = []  # (start, end, replacement, removed number)
    phrases = []
    for pattern, replacement in ((_ORDINAL_TERM, "a later term"), (_TERM_NUMBER, "a later term")):
        for m in pattern.finditer(q):
            phrases.append(m.span())
            if _needed(m.group(1), program):
                edits.append((m.start(), m.end(), replacement, m.group(1)))
    for start, end in _number_spans(q):
        if _inside(start, phrases) or not _needed(q[start:end], program):
            continue
        after, before = q[end:], q[:start]
        if after.startswith("%"):
            edits.append((start, end + 1, "some percentage", q[start:end]))
        elif (word := re.match(r" ([a-z]+)", after)) and word.group(1) not in _NOT_NOUNS:
            edits.append((start, end, "a few" if before.endswith("first ") else "some", q[start:end]))
        else:
            edits.append((start, end, "some number", q[start:end]))
    if not edits:
        return None
    start, end, replacement, removed = rng.choice(edits)
    if start == 0 or q[:start].rstrip().endswith((".", "?", "!")):
        replacement = replacement[0].upper() + replacement[1:]
    return q[:start] + replacement + q[end:], {"removed": removed, "replacement": replacement}


def _equations(q: str) -> list[tuple[int, int]]:
    """Spans of equations like '3x + 4 = 7' or '-6(x - 8) - 11 = -9x - 7' (x, y and numbers only)."""
    tokens = [(m.start(), m.end(), m.group(0)) for m in re.finditer(r"\S+", q)]
    spans = []
    for i, (_, _, tok) in enumerate(tokens):
        if tok != "=":
            continue
        lo = i
        while lo > 0 and not re.search(r"[.,:;?]$", tokens[lo - 1][2]) and _MATH_TOKEN.match(tokens[lo - 1][2]):
            lo -= 1
        hi = i
        while hi + 1 < len(tokens):
            word = tokens[hi + 1][2]
            bare = re.sub(r"[.,:;?]+$", "", word)
            if not bare or not _MATH_TOKEN.match(bare):
                break
            hi += 1
            if bare != word:
                break
        if lo < i < hi:
            end = tokens[hi][0] + len(re.sub(r"[.,:;?]+$", "", tokens[hi][2]))
            if not q[end:].startswith(" (mod"):
                spans.append((tokens[lo][0], end))
    return spans


def _contradiction(record: dict, rng: random.Random):
    q, program = record["question"], _program_integers(record)
    options = []
    for a, b in _equations(q):
        equation = q[a:b]
        numbers = [m for m in re.finditer(r"\S+", equation) if _PLAIN_NUMBER.match(m.group(0))]
        for m in numbers:
            changed = equation[:m.start()] + _other_value(rng, m.group(0)) + equation[m.end():]
            options.append((b, f" and also {changed}"))
    sentences = _sentences(q)
    for m in _POSSESSION.finditer(q):
        name, verb, count, noun = m.groups()
        end = next(e for s, e in sentences if s <= m.start() < e)
        if end < len(q):  # not inside the final question
            options.append((end, f" At the same moment, {name} {verb} exactly {_other_value(rng, count)} {noun}."))
    for m in _LISTING.finditer(q):
        terms = re.findall(r"-?\d+(?:/\d+)?", m.group(0))
        k = rng.randrange(min(len(terms), len(_ORDINAL_WORDS)))
        options.append((len(q), f" Note that the {_ORDINAL_WORDS[k]} term is {_other_value(rng, terms[k])}."))
    for start, end in _number_spans(q):
        n = q[start:end]
        if not _needed(n, program):
            continue
        claims = [f"Note that {n} is equal to {_other_value(rng, n)}."]
        if "/" not in n:
            claims.append(f"Note that {n} is an {'odd' if int(n) % 2 == 0 else 'even'} number.")
            claims.append(f"Note that {n} is greater than {abs(int(n)) + rng.randint(1, 9)}.")
        options.append((len(q), " " + rng.choice(claims)))
    if not options:
        return None
    at, added = rng.choice(options)
    return q[:at] + added + q[at:], {"added": added.strip(), "at": at}


def _present(q: str, word: str) -> bool:
    return re.search(rf"\b{re.escape(word)}\b", q) is not None


def _unanswerable(record: dict, rng: random.Random):
    q = record["question"]
    sentences = _sentences(q)
    options = []
    last_start = sentences[-1][0]
    if len(sentences) > 1 and q.rstrip().endswith("?"):
        data = q[:last_start]
        asks = ["What is the value of z?"]
        names = [p.name for p in PEOPLE if _present(data, p.name)]
        things = [it for it in ITEMS if _present(data, it.many)]
        for name in names:
            asks += [f"How old is {name}?", f"How many siblings does {name} have?"]
        for it in things:
            asks += [f"What color are the {it.many}?", f"How much does one {it.one} weigh, in grams?"]
        options += [(data + ask, ask) for ask in asks]
    symbols = [s for s in _UNDEFINED if not _present(q, s)]
    if not symbols:
        return None
    symbol = rng.choice(symbols)
    step = rng.choice([f"add {symbol} to your answer", f"multiply your answer by {symbol}",
                       f"subtract {symbol} from your answer"])
    added = f"Then {step}. What number do you get?"
    options.append((q.rstrip() + " " + added, added))
    question, asked = rng.choice(options)
    return question, {"asked": asked}


def _swap_entity(record: dict, rng: random.Random):
    q = record["question"]
    objects = [it.many for it in ITEMS] + list(_OTHER_OBJECTS)
    options = []
    for p in PEOPLE:
        found = list(re.finditer(rf"\b{p.name}\b", q))
        if len(found) >= 2:
            others = [o.name for o in PEOPLE if o.they == p.they and not _present(q, o.name)]
            options.append((found[-1].span(), p.name, others))
    for word in objects:
        found = list(re.finditer(rf"\b{word}\b", q))
        if len(found) >= 2:
            options.append((found[-1].span(), word, [o for o in objects if not _present(q, o)]))
    options = [o for o in options if o[2]]
    if not options:
        return None
    (start, end), old, others = rng.choice(options)
    new = rng.choice(others)
    return q[:start] + new + q[end:], {"replaced": old, "by": new}


_CORRUPTORS = {"drop_quantity": _drop_quantity, "contradiction": _contradiction,
               "unanswerable": _unanswerable, "swap_entity": _swap_entity}


def corrupt_question(record: dict, kind: str, rng: random.Random) -> dict | None:
    """The question of `record` made ill-posed by `kind` (see the module docstring), or None when
    the kind does not apply. Returns {id, parent, domain, question, answer: UNANSWERABLE,
    corruption: kind, detail} where detail says what changed (removed / added / asked / replaced)."""
    if kind not in _CORRUPTORS:
        raise ValueError(f"kind ({kind!r}) must be one of {CORRUPTIONS}")
    question = record.get("question") if isinstance(record, dict) else None
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"record must be a dict with a non-empty 'question', got {record!r:.80}")
    result = _CORRUPTORS[kind](record, rng)
    if result is None:
        return None
    new_question, detail = result
    parent = record.get("id") or normalize_question(question)
    return {"id": f"{parent}-{kind}", "parent": parent, "domain": record.get("domain", ""),
            "question": new_question, "answer": UNANSWERABLE, "corruption": kind, "detail": detail}


# ------------------------------------------------------------------------------------------ wrong solutions


def _boxed_span(text: str) -> tuple[int, int] | None:
    """Span of the content of the last \\boxed{...} (balanced braces)."""
    spans = boxed_spans(text)
    return (spans[-1].content_start, spans[-1].content_end) if spans else None


def corrupt_solution(record: dict, kind: str, rng: random.Random, field: str = "pot") -> dict | None:
    """A wrong solution of `record` made from its reference `record[field]`, or None when `kind`
    does not apply:

    final_answer   one number of the final \\boxed{...} answer changed: the final line disagrees
                   with the program's output (or the last computed step).
    copied_number  a number of two or more digits that the question states is written
                   differently everywhere in the work
                   (code and reasoning), outputs and final answer untouched: the work no longer
                   follows from the question -- what answer-only grading lets through.

    Returns {question, solution, correct: False, corruption: kind, parent}."""
    if kind not in SOLUTION_CORRUPTIONS:
        raise ValueError(f"kind ({kind!r}) must be one of {SOLUTION_CORRUPTIONS}")
    solution = record.get(field)
    if not isinstance(solution, str):
        raise ValueError(f"record field {field!r} must be a solution string, got {solution!r:.60}")
    q = record["question"]
    if kind == "final_answer":
        span = _boxed_span(solution)
        if span is None:
            return None
        a, b = span
        numbers = [m for m in re.finditer(r"-?\d+(?:/\d+)?", solution[a:b])]
        if not numbers:
            return None
        m = rng.choice(numbers)
        new = solution[:a + m.start()] + _other_value(rng, m.group(0)) + solution[a + m.end():]
    else:
        # the work is everything before the final answer, minus output blocks
        span = _boxed_span(solution)
        work_end = solution.rfind("The answer is", 0, span[0]) if span else len(solution)
        work_end = len(solution) if work_end < 0 else work_end
        outputs = [(m.start(), m.end()) for m in re.finditer(r"```output\n.*?\n```", solution, re.DOTALL)]
        candidates = []
        for start, end in _number_spans(q):
            n = q[start:end]
            if not re.fullmatch(r"\d{2,}", n):  # one digit also stands for indices, exponents, ...
                continue
            hits = [m for m in re.finditer(rf"(?<![\w.^*]){n}(?![\w.]|\.\d)", solution[:work_end])
                    if not _inside(m.start(), outputs)]
            if hits:
                candidates.append((n, hits))
        if not candidates:
            return None
        n, hits = rng.choice(candidates)
        other = _other_value(rng, n)
        pieces, last = [], 0
        for m in hits:
            pieces += [solution[last:m.start()], other]
            last = m.end()
        new = "".join(pieces) + solution[last:]
    return {"question": q, "solution": new, "correct": False, "corruption": kind,
            "parent": record.get("id") or normalize_question(q)}


def synthetic_graded_samples(records: Sequence[dict], fields: Sequence[str] = ("pot", "mixed"),
                             kinds: Sequence[str] = SOLUTION_CORRUPTIONS, seed: int = 0) -> list[dict]:
    """Graded samples without a sampler: each record's reference solutions (correct) and, per
    solution, one `corrupt_solution` of a random applicable kind (incorrect)."""
    bad = [k for k in kinds if k not in SOLUTION_CORRUPTIONS]
    if bad or not kinds:
        raise ValueError(f"kinds ({list(kinds)!r}) must be a non-empty subset of {SOLUTION_CORRUPTIONS}")
    rng = random.Random(seed)
    out = []
    for record in records:
        for field in fields:
            if not record.get(field):
                continue
            out.append({"question": record["question"], "solution": record[field], "correct": True})
            for kind in rng.sample(list(kinds), len(kinds)):
                wrong = corrupt_solution(record, kind, rng, field)
                if wrong is not None:
                    out.append(wrong)
                    break
    return out


# ------------------------------------------------------------------------------------------ examples


def validate_critique_example(ex: dict, where: str = "example") -> None:
    if not isinstance(ex, dict):
        raise ValueError(f"{where}: expected a dict, got {type(ex).__name__}")
    if ex.get("task") not in TASKS:
        raise ValueError(f"{where}: task ({ex.get('task')!r}) must be one of {TASKS}")
    if not isinstance(ex.get("question"), str):
        raise ValueError(f"{where}: field 'question' must be a string, got {ex.get('question')!r:.60}")
    if ex["task"] == "solution" and not isinstance(ex.get("solution"), str):
        raise ValueError(f"{where}: a solution example needs a string 'solution', got {ex.get('solution')!r:.60}")
    if ex.get("label") not in (0, 1) or isinstance(ex.get("label"), float):
        raise ValueError(f"{where}: label ({ex.get('label')!r}) must be 0 or 1 (or a bool)")


def question_examples(records: Sequence[dict], kinds: Sequence[str] = CORRUPTIONS, negatives_per_question: int = 1,
                      seed: int = 0) -> list[dict]:
    """Question-task examples: each record's question (label 1) and up to `negatives_per_question`
    corruptions of it (label 0), the kinds drawn in turn from a shuffled cycle over `kinds`
    (a kind that does not apply falls through to the next)."""
    bad = [k for k in kinds if k not in CORRUPTIONS]
    if bad or not kinds:
        raise ValueError(f"kinds ({list(kinds)!r}) must be a non-empty subset of {CORRUPTIONS}")
    if negatives_per_question < 0:
        raise ValueError(f"negatives_per_question ({negatives_per_question}) must be >= 0")
    rng = random.Random(seed)
    cycle = list(kinds)
    turn = 0
    out = []
    for i, record in enumerate(records):
        if not isinstance(record, dict) or not isinstance(record.get("question"), str):
            raise ValueError(f"record {i}: expected a dict with a string 'question'")
        group = normalize_question(record["question"])
        out.append({"task": "question", "question": record["question"], "solution": None, "label": 1,
                    "source": "original", "group": group})
        made = set()
        for _ in range(len(cycle) * max(1, negatives_per_question)):
            if len(made) >= negatives_per_question:
                break
            if turn % len(cycle) == 0:
                rng.shuffle(cycle)
            kind = cycle[turn % len(cycle)]
            turn += 1
            bad_q = corrupt_question(record, kind, rng)
            if bad_q is None or bad_q["question"] in made:
                continue
            made.add(bad_q["question"])
            out.append({"task": "question", "question": bad_q["question"], "solution": None, "label": 0,
                        "source": f"corruption/{kind}", "group": group})
    return out


def graded_examples(graded: Sequence[dict]) -> list[dict]:
    """Solution-task examples from graded samples {question, solution, correct}."""
    out = []
    for i, g in enumerate(graded):
        if not isinstance(g, dict):
            raise ValueError(f"graded sample {i}: expected a dict, got {type(g).__name__}")
        for key in ("question", "solution"):
            if not isinstance(g.get(key), str):
                raise ValueError(f"graded sample {i}: field {key!r} must be a string, got {g.get(key)!r:.60}")
        if not isinstance(g.get("correct"), bool) and g.get("correct") not in (0, 1):
            raise ValueError(f"graded sample {i}: field 'correct' must be a bool, got {g.get('correct')!r}")
        out.append({"task": "solution", "question": g["question"], "solution": g["solution"],
                    "label": int(bool(g["correct"])), "source": g.get("corruption", "graded"),
                    "group": normalize_question(g["question"])})
    return out


def _balanced(examples: list[dict], rng: random.Random) -> list[dict]:
    """Per task, the majority label down-sampled to the minority's count (a task that lacks one
    label is kept whole: there is nothing to balance against)."""
    out = []
    for task in TASKS:
        pos = [e for e in examples if e["task"] == task and e["label"] == 1]
        neg = [e for e in examples if e["task"] == task and e["label"] == 0]
        k = min(len(pos), len(neg))
        if k == 0:
            out += pos + neg
        else:
            out += rng.sample(pos, k) + rng.sample(neg, k)
    return out


def build_critique_dataset(records: Sequence[dict] = (), graded: Sequence[dict] = (), *,
                           kinds: Sequence[str] = CORRUPTIONS, negatives_per_question: int = 1,
                           held_out: float = 0.2, balance: bool = True, seed: int = 0) -> dict[str, list[dict]]:
    """{"train": [...], "held_out": [...]} critique examples: the question task from `records`
    (originals + corruptions), the solution task from `graded`. The split is by `group` (the
    normalized question): round(held_out * #groups) groups, drawn with `seed`, are held out, so no
    question, corruption or solution of a held-out question is trained on. With `balance`, each
    split has as many positives as negatives per task. Both splits are shuffled."""
    if not 0.0 <= held_out < 1.0:
        raise ValueError(f"held_out ({held_out}) must lie in [0, 1)")
    examples = question_examples(records, kinds, negatives_per_question, seed) + graded_examples(graded)
    if not examples:
        raise ValueError("build_critique_dataset needs records or graded samples")
    rng = random.Random(seed)
    groups = sorted({e["group"] for e in examples})
    rng.shuffle(groups)
    held = set(groups[:round(held_out * len(groups))])
    splits = {"train": [e for e in examples if e["group"] not in held],
              "held_out": [e for e in examples if e["group"] in held]}
    for name, part in splits.items():
        part = _balanced(part, rng) if balance else part
        rng.shuffle(part)
        splits[name] = part
    return splits


def critique_class_weights(examples: Sequence[dict]) -> tuple[float, float]:
    """(w_bad, w_good) = n / (2 n_bad), n / (2 n_good): each class carries half of the loss
    (1, 1 for balanced data). A missing class gets weight 0."""
    n_good = sum(1 for e in examples if e["label"] == 1)
    n_bad = len(examples) - n_good
    if not examples:
        raise ValueError("critique_class_weights needs at least one example")
    n = len(examples)
    return (n / (2 * n_bad) if n_bad else 0.0, n / (2 * n_good) if n_good else 0.0)
