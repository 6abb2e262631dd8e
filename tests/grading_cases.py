"""Hand-labelled grading decisions in GSM8K and MATH formats, shared by test_grading.py and
benchmarks/grading_decisions.py.

Each case is (kind, text, gold, correct, why):

    kind     "response": a whole model output, the grader must find the answer in it;
             "answer": an already extracted final answer (what a \\boxed{} held)
    text     the response or the answer, as a model writes it
    gold     the dataset's gold final answer (GSM8K's number after ####, MATH's boxed answer)
    correct  the verdict a careful human grader gives, decided by reading the pair (never by
             running a grader); ``why`` says the reason wherever the verdict is not obvious

The groups follow the gaps listed in issue 16 (wrong answers credited, final-answer lines,
Unicode minus, solution lists, units, \\binom and \\log_b, scientific notation, thousands
separators, intervals, repeating decimals) plus ordinary pairs and what mathlm already did
better than Math-Verify (\\fbox, mixed numbers, matrices as lists, tuple vs column vector).

Both graders get the same information: mathlm grades ``math_equal(extract_answer(text), gold)``
for a response and ``math_equal(text, gold)`` for an answer; Math-Verify grades
``verify(parse("\\boxed{gold}"), parse(text))`` for a response and wraps an answer in
``\\boxed{}`` too (its documented use: gold and prediction both parsed).
"""
from __future__ import annotations

from typing import NamedTuple


class Case(NamedTuple):
    group: str
    kind: str
    text: str
    gold: str
    correct: bool
    why: str


CASES: list[Case] = []


def _add(group: str, kind: str, rows: list[tuple]) -> None:
    for row in rows:
        text, gold, correct, *why = row
        CASES.append(Case(group, kind, text, gold, correct, why[0] if why else ""))


# ---------------------------------------------------------------------------------------------
# ordinary GSM8K responses (few-shot "####" format, chat models' "The answer is", boxed)

_add("gsm8k ordinary", "response", [
    ("Natalia sold 48/2 = 24 clips in May.\nNatalia sold 48+24 = 72 clips altogether in April and May.\n#### 72",
     "72", True),
    ("Natalia sold 48/2 = 24 clips in May.\nAltogether she sold 48+24 = 62 clips.\n#### 62", "72", False),
    ("Weng earns 12/60 = $0.2 per minute.\nWorking 50 minutes, she earned 0.2 x 50 = $10.\n#### 10", "10", True),
    ("She earns 12 * 50 = $600.\n#### 600", "10", False),
    ("Betty has 100 / 2 = $50. Her grandparents give her 15 * 2 = $30. She needs 100 - 50 - 30 - 15 = $5 more."
     "\n#### 5", "5", True),
    ("The total cost is 3 * $1,250 = $3,750.\n#### 3,750", "3750", True, "thousands separator in the #### line"),
    ("The total cost is 3 * $1,250 = $3,750.\n#### 3750", "3750", True),
    ("The total cost is 3 * 1250 = 3850.\n#### 3,850", "3750", False),
    ("James writes 3*2 = 6 pages a week to each friend, so 6*2 = 12 pages a week, and 12*52 = 624 pages a year."
     "\n#### 624", "624", True),
    ("He writes 3 * 2 * 2 = 12 pages per week. In a year that is 12 * 52 = 624 pages.\nThe answer is 624.",
     "624", True),
    ("He writes 12 pages a week, so in a year he writes 12 * 12 = 144 pages.\nThe answer is 144.", "624", False),
    ("So the farmer has 5 + 3 = 8 cows left. The answer is 8.", "8", True),
    ("So the farmer has 5 - 3 = 2 cows left. The answer is 2.", "8", False),
    ("Each box holds 6 eggs, so 48 / 6 = 8 boxes.\nThe answer is $\\boxed{8}$.", "8", True),
    ("Each box holds 6 eggs, so 48 / 6 = 8 boxes. Adding the spare box: \\boxed{9}", "8", False),
    ("The price after the discount is 80% of $50, which is $40.\n#### 40", "40", True),
    ("The price after the discount is $50 - $10 = $40. The answer is $40.", "40", True, "currency sign on the answer"),
    ("The answer is 40 dollars.", "40", True, "unit word after the number"),
    ("Total = 2.5 + 1.25 = 3.75 hours.\n#### 3.75", "3.75", True),
    ("Total = 2.5 + 1.25 = 3.75 hours.\n#### 3.8", "3.75", False, "rounded to one digit: not the gold 3.75"),
    ("The answer is 0.5.", ".5", True),
    ("She has -3 + 10 = 7 apples. #### 7", "7", True),
    ("Each of the 4 friends gets 18 / 4 = 4.5 slices.\n#### 4.5", "4.5", True),
    ("Each of the 4 friends gets 18 / 4 = 4 slices.\n#### 4", "4.5", False),
    ("The team scored 20 + 25 + 30 = 75 points in total.\n#### 75", "75", True),
    ("The total is 1000 + 200 + 50 = 1250\n#### 1250", "1250", True),
    ("The total is 1000 + 200 + 50 = 1250\n#### 1205", "1250", False),
    ("John runs 3 * 60 = 180 meters per sprint, and 180 * 3 = 540 meters a week.\nThe answer is 540 meters.",
     "540", True),
    ("In 2 weeks she saves 2 * 7 * 3 = $42.\n#### 42.00", "42", True, "42.00 is 42"),
    ("The answer is: 18", "18", True),
    ("The answer is 18 eggs.", "18", True),
    ("The final answer is 17.", "18", False),
    ("```python\nprint(16 - 3 - 4)\n```\n```output\n9\n```\nShe has 9 eggs to sell, 9 * 2 = 18 dollars.\n"
     "The answer is \\boxed{18}.", "18", True),
    ("```python\nprint((16 - 3 - 4) * 2)\n```\n```output\n18\n```\n", "18", True, "a program's printed output"),
    ("```python\nprint((16 - 3 - 4) * 2)\n```\n```output\n18.0\n```\n", "18", True, "18.0 is 18"),
    ("```python\nprint(0.1 + 0.2)\n```\n```output\n0.30000000000000004\n```\n", "0.3", True,
     "float noise in a printed result"),
    ("```python\nprint(16 - 3 - 4)\n```\n```output\n9\n```\n", "18", False),
    ("#### 100", "100", True),
    ("The answer is 1/2.", "0.5", True),
    ("The answer is 50%.", "50", True, "a percentage question answered with %"),
])

# ---------------------------------------------------------------------------------------------
# ordinary MATH answers (what sits in the final \boxed{})

_add("math ordinary", "answer", [
    ("\\frac{5}{6}", "\\frac{5}{6}", True), ("\\dfrac{5}{6}", "\\frac{5}{6}", True), ("5/6", "\\frac{5}{6}", True),
    ("\\frac{10}{12}", "\\frac{5}{6}", True, "not in lowest terms but the same number"),
    ("\\frac{6}{5}", "\\frac{5}{6}", False), ("0.8333", "\\frac{5}{6}", True, "5/6 rounded to 4 places"),
    ("\\frac{1}{2}", "-\\frac{1}{2}", False), ("-\\frac12", "-\\frac{1}{2}", True),
    ("\\frac{-1}{2}", "-\\frac{1}{2}", True),
    ("2\\sqrt{2}", "\\sqrt{8}", True), ("\\sqrt{8}", "2\\sqrt{2}", True), ("2\\sqrt{3}", "\\sqrt{8}", False),
    ("\\frac{\\sqrt{3}}{2}", "\\frac{\\sqrt3}{2}", True), ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}", True),
    ("\\frac{\\sqrt{3}}{3}", "\\frac{\\sqrt{3}}{2}", False),
    ("3\\pi", "3\\pi", True), ("\\pi \\cdot 3", "3\\pi", True), ("9\\pi", "3\\pi", False),
    ("\\frac{4}{3}\\pi", "\\frac{4\\pi}{3}", True), ("36\\pi", "36 \\pi", True),
    ("(3, \\frac{\\pi}{2})", "\\left( 3, \\frac{\\pi}{2} \\right)", True),
    ("(3, \\frac{\\pi}{4})", "\\left( 3, \\frac{\\pi}{2} \\right)", False),
    ("(\\frac{\\pi}{2}, 3)", "\\left( 3, \\frac{\\pi}{2} \\right)", False, "a point: order matters"),
    ("(2, -1)", "(2,-1)", True), ("(-1, 2)", "(2,-1)", False),
    ("x^2+2x+1", "(x+1)^2", True), ("x^2+2x-1", "(x+1)^2", False), ("2x+3", "3+2x", True),
    ("3x^2 - 6x", "3x(x-2)", True), ("3x^2 + 6x", "3x(x-2)", False),
    ("\\frac{x+1}{x-1}", "\\frac{x+1}{x-1}", True), ("\\frac{x-1}{x+1}", "\\frac{x+1}{x-1}", False),
    ("2^{10}", "1024", True), ("1023", "1024", False), ("10!", "3628800", True),
    ("\\sqrt[3]{27}", "3", True), ("-3", "3", False), ("0", "0", True), ("\\infty", "\\infty", True),
    ("[2, 5]", "[2,5]", True), ("(2, 5]", "[2,5]", False, "an interval: brackets matter"),
    ("(-\\infty, 3)", "(-\\infty,3)", True),
    ("(-\\infty, 0) \\cup (1, \\infty)", "(-\\infty,0)\\cup(1,\\infty)", True),
    ("(-\\infty, 0] \\cup (1, \\infty)", "(-\\infty,0)\\cup(1,\\infty)", False),
    ("\\text{(C)}", "\\text{(C)}", True), ("\\text{(B)}", "\\text{(C)}", False),
    ("\\text{Devon}", "\\text{Devon}", True), ("Devon", "\\text{Devon}", True),
    ("12", "12", True), ("11", "12", False), ("-7", "-7", True), ("90^\\circ", "90", True), ("90", "90^\\circ", True),
    ("45^\\circ", "90^\\circ", False),
    ("\\$18.90", "18.90", True), ("18.9", "\\$18.90", True),
    ("y = 2x + 3", "y=2x+3", True), ("y = 2x - 3", "y=2x+3", False),
    ("x = 5", "5", True), ("x = 4", "5", False), ("\\{1, 2, 3\\}", "\\{3, 2, 1\\}", True),
    ("\\{1, 2\\}", "\\{1, 2, 3\\}", False),
    ("4 + 3i", "3i + 4", True), ("4 - 3i", "4+3i", False),
    ("e^2", "e^{2}", True), ("\\ln(e^3)", "3", True),
    ("\\frac{1}{4}", "0.25", True), ("25\\%", "\\frac{1}{4}", True), ("\\frac{1}{5}", "0.25", False),
])

# ---------------------------------------------------------------------------------------------
# wrong answers credited: variables read as units, tolerance, responses without an answer

_add("variables are not units", "answer", [
    ("6xy", "6", False, "6xy is a monomial: the variables are not a unit"),
    ("6", "6xy", False, "the gold is a monomial, 6 drops its variables"),
    ("3xy", "3xz", False, "different variables"), ("3xy", "3yx", True, "xy = yx"),
    ("2ab", "2", False, "2ab is a product, not 2 with a unit"), ("2ab", "2ba", True),
    ("4x", "4", False), ("5 x", "5", False), ("12 ab", "12", False, "a two-letter product, not a unit"),
    ("x y", "xy", True),
    ("6xyz", "6xyz", True), ("6xyz", "6xy", False),
    ("5cm", "5", True, "cm is a unit"), ("5 \\text{ cm}", "5", True), ("12 apples", "12", True),
    ("60 km/h", "60", True), ("3 hours", "3", True), ("10 ft", "10", True),
    ("2\\pi r", "2\\pi", False, "r is a variable"),
    ("8 \\text{ inches}", "8", True), ("7 \\text{ units}", "8", False),
])

_add("tolerance", "answer", [
    ("2.0001", "2", False, "not 2: the extra digit is written, a rounding of 2 would be 2.0000"),
    ("2", "2.0001", False, "same, the other way"),
    ("1.9999", "2", False), ("2.00", "2", True), ("2.0", "2", True),
    ("0.6667", "\\frac{2}{3}", True, "2/3 rounded to 4 places"),
    ("0.66667", "\\frac{2}{3}", True, "2/3 rounded to 5 places"),
    ("0.6666", "\\frac{2}{3}", False, "truncated, not rounded: 2/3 to 4 places is 0.6667"),
    ("0.333", "\\frac{1}{3}", False, "three digits are too few for an exact answer"),
    ("3.1416", "\\pi", True, "pi to 4 places"), ("3.14", "\\pi", False, "pi to 2 places: too coarse"),
    ("1.4142", "\\sqrt{2}", True), ("1.41", "\\sqrt{2}", False),
    ("1000.5", "1000", False), ("100000", "100001", False), ("100000.0", "100000", True),
    ("12.50", "12.5", True), ("12.51", "12.5", False),
    ("3.75", "\\frac{15}{4}", True), ("3.7", "\\frac{15}{4}", False),
    ("0.30000000000000004", "0.3", True, "a Python float print of 0.1 + 0.2"),
    ("1.0000001", "1", False, "seven written places differ from 1"),
    ("0.1", "\\frac{1}{10}", True), ("0.01", "0.1", False), ("1e-3", "0.001", True),
])

_add("no stated answer", "response", [
    ("First we add the two numbers: 3 + 4 = 7", "7", False,
     "cut off mid-solution: the response never states an answer"),
    ("Let's compute step by step. The number of apples is 3 + 4 = 7, and then we multiply", "7", False,
     "truncated: 7 is an intermediate value"),
    ("She buys 3 packs of 12 = 36 pencils and gives away", "36", False, "truncated"),
    ("We need to find the total. 48 / 2 = 24", "24", False, "truncated after a step"),
    ("To solve this, note that 2x = 10, so", "5", False, "no answer at all"),
    ("Let me think about this problem carefully.", "3", False),
    ("", "3", False, "empty response"),
    ("Therefore, Natalia sold 72 clips altogether.", "72", True, "a closing sentence states the answer"),
    ("So she earns 9 * 2 = 18 dollars every day.", "18", True, "a closing 'So ...' sentence"),
    ("Thus the total is 1,250.", "1250", True),
    ("So she earns 9 * 2 = 18 dollars every day.", "9", False),
    ("18", "18", True, "a bare answer"), ("$18$", "18", True), ("17", "18", False),
])

_add("final-answer lines", "response", [
    ("We have $8 \\cdot 9 = 72$.\nFinal Answer: The final answer is $72$. I hope it is correct.", "72", True,
     "MATH few-shot (Minerva) ending"),
    ("We have $8 \\cdot 9 = 71$.\nFinal Answer: The final answer is $71$. I hope it is correct.", "72", False),
    ("Final Answer: The final answer is $\\frac{5}{6}$. I hope it is correct.", "\\frac{5}{6}", True),
    ("Final Answer: The final answer is $(3,\\frac{\\pi}{2})$. I hope it is correct.",
     "\\left( 3, \\frac{\\pi}{2} \\right)", True),
    ("Final Answer: The final answer is $2\\sqrt{2}$. I hope it is correct.", "\\sqrt{8}", True),
    ("Final Answer: The final answer is $2\\sqrt{3}$. I hope it is correct.", "\\sqrt{8}", False),
    ("Final Answer: The final answer is 1,250. I hope it is correct.", "1250", True),
    ("Final Answer: The final answer is $-\\frac{3}{4}$. I hope it is correct.", "-\\frac34", True),
    ("Final Answer: 12", "12", True), ("**Final Answer:** 12", "12", True),
    ("The final answer is $\\boxed{12}$.", "12", True), ("Answer: 3.5", "\\frac{7}{2}", True),
    ("The answer is $x = 4$.", "4", True), ("The final answer is 4. I hope it is correct.", "5", False),
])

_add("unicode minus", "answer", [
    ("\u22125", "-5", True, "U+2212 is a minus sign"), ("\u22125", "5", False),
    ("\u2212\\frac{1}{2}", "-\\frac12", True), ("(\u22121, 2)", "(-1, 2)", True), ("(\u22121, 2)", "(1, 2)", False),
    ("x \u2212 1", "x-1", True), ("\u22120.5", "-\\frac{1}{2}", True), ("3 \u00d7 4", "12", True),
])
_add("unicode minus", "response", [
    ("The answer is \u22127.", "-7", True), ("The answer is \u22127.", "7", False),
])

# ---------------------------------------------------------------------------------------------
# solution lists, units with exponents, parser gaps

_add("solution lists", "answer", [
    ("3, 2", "2, 3", True, "'enter all solutions': a list of roots is a set"),
    ("2, 3", "2, 3", True), ("-1, 4", "4, -1", True), ("2, 4", "2, 3", False), ("2", "2, 3", False),
    ("1, 2, 3", "3, 1, 2", True), ("1, 2, 3", "1, 2", False),
    ("x = 2 \\text{ or } x = 3", "2, 3", True, "two solutions written as a sentence"),
    ("x = 3 \\text{ or } x = 2", "2, 3", True), ("x=2 \\text{ and } x=3", "2,3", True),
    ("x = 2 \\text{ or } x = 4", "2, 3", False),
    ("x = 2, x = 3", "3, 2", True), ("x=-1, x=4", "-1, 4", True),
    ("\\pm 2", "2, -2", True, "\\pm is both signs"), ("\\pm 2", "-2, 2", True), ("x = \\pm 2", "2,-2", True),
    ("\\pm 3", "2, -2", False), ("2", "\\pm 2", False, "one of the two solutions"),
    ("2 \\pm \\sqrt{3}", "2 + \\sqrt{3}, 2 - \\sqrt{3}", True),
    ("\\frac{1 \\pm \\sqrt{5}}{2}", "\\frac{1+\\sqrt5}{2}, \\frac{1-\\sqrt5}{2}", True),
    ("\\frac{1 \\pm \\sqrt{5}}{2}", "\\frac{1+\\sqrt5}{2}", False, "only one root in the gold"),
    ("1 \\pm i", "1+i, 1-i", True), ("\\pm\\sqrt{2}", "\\sqrt2, -\\sqrt2", True),
    ("(1, 2)", "(2, 1)", False, "an ordered pair, not a list of solutions"),
    ("x = 2, y = 3", "(2, 3)", True, "a system's solution is the pair (x, y)"),
    ("x = 2, y = 3", "(3, 2)", False),
])

_add("units with exponents", "answer", [
    ("25\\text{ cm}^2", "25", True, "square centimetres"), ("25 \\text{cm}^{2}", "25", True),
    ("25\\text{ m}^2", "25", True, "a \\text{} unit of one letter is still a unit"),
    ("24 \\text{ cm}^3", "25", False), ("8\\text{ square units}", "8", True), ("8\\text{ sq units}", "8", True),
    ("48\\pi \\text{ cm}^2", "48\\pi", True), ("50 \\mbox{ cm}^2", "50", True), ("16 cm^2", "16", True),
    ("3+4\\mathrm{i}", "3+4i", True, "\\mathrm{i} is the imaginary unit, not a unit"),
])

_add("binom and log", "answer", [
    ("\\binom{5}{2}", "10", True), ("\\dbinom{6}{3}", "20", True), ("\\binom{5}{3}", "\\binom{5}{2}", True),
    ("\\binom{5}{2}", "20", False), ("\\binom{10}{5}", "252", True),
    ("\\log_2 8", "3", True), ("\\log_{2}(8)", "3", True), ("\\log_3 81", "4", True), ("\\log_2 8", "4", False),
    ("\\log_{10} 1000", "3", True), ("\\frac{\\log 5}{\\log 2}", "\\log_2 5", True), ("\\log_2 5", "\\log_5 2", False),
    ("2\\log_2 3", "\\log_2 9", True),
])

_add("powers of ten and thousands", "answer", [
    ("10^6", "1,000,000", True), ("1,000,000", "10^6", True), ("10^5", "1,000,000", False),
    ("2^{20}", "1,048,576", True), ("1{,}000{,}000", "10^{6}", True),
    ("1\\,000", "1000", True, "thin-space thousands separator"), ("1\\,000\\,000", "10^6", True),
    ("12\\,345", "12345", True), ("1\\,000", "100", False), ("1 000", "1000", True, "space-separated thousands"),
    ("1\u2009000", "1000", True, "U+2009 thin space"), ("12,345", "12345", True), ("12,346", "12345", False),
])

_add("scientific notation", "answer", [
    ("6.02e23", "6.02 \\times 10^{23}", True, "e is the exponent marker here, not Euler's number"),
    ("6.02 \\times 10^{23}", "6.02e23", True), ("6.02 \\cdot 10^{23}", "6.02\\times10^{23}", True),
    ("6.02e22", "6.02 \\times 10^{23}", False), ("6.03e23", "6.02 \\times 10^{23}", False),
    ("1.5e-3", "0.0015", True), ("1.5 \\times 10^{-3}", "0.0015", True), ("3 \\times 10^8", "300000000", True),
    ("3 \\times 10^9", "300000000", False),
])

_add("intervals and inequalities", "answer", [
    ("x \\in [2, 5)", "[2,5)", True), ("x \\in [2, 5]", "[2,5)", False),
    ("2 \\le x < 5", "[2, 5)", True), ("2 \\leq x < 5", "[2,5)", True), ("2 < x < 5", "[2, 5)", False),
    ("x > 3", "(3, \\infty)", True), ("x \\ge 3", "[3,\\infty)", True), ("x \\ge 3", "(3,\\infty)", False),
    ("x < -1", "(-\\infty, -1)", True), ("x \\le -1", "(-\\infty,-1]", True),
    ("3 < x", "(3, \\infty)", True), ("5 > x > 2", "(2, 5)", True),
    ("x < -1 \\text{ or } x > 2", "(-\\infty,-1)\\cup(2,\\infty)", True),
    ("x \\in (-\\infty, -1) \\cup (2, \\infty)", "(-\\infty,-1)\\cup(2,\\infty)", True),
    ("x < 1 \\text{ or } x > 2", "(-\\infty,-1)\\cup(2,\\infty)", False),
    ("-2 \\le x \\le 2", "[-2,2]", True), ("x \u2264 4", "(-\\infty, 4]", True),
])

_add("repeating decimals", "answer", [
    ("0.\\overline{3}", "\\frac{1}{3}", True), ("0.\\overline{6}", "\\frac{2}{3}", True),
    ("0.1\\overline{6}", "\\frac{1}{6}", True), ("0.\\overline{27}", "\\frac{3}{11}", True),
    ("1.\\overline{3}", "\\frac{4}{3}", True), ("0.\\overline{3}", "\\frac{1}{4}", False),
    ("\\frac{1}{3}", "0.\\overline{3}", True), ("0.\\overline{142857}", "\\frac17", True),
    ("0.\\overline{12}", "\\frac{12}{100}", False, "0.1212... is 4/33, not 0.12"),
])

# ---------------------------------------------------------------------------------------------
# what mathlm already did better than Math-Verify: keep it

_add("kept strengths", "answer", [
    ("1 1/2", "\\frac{3}{2}", True, "a mixed number"), ("1\\frac{1}{2}", "\\frac32", True),
    ("2 \\frac{3}{4}", "\\frac{11}{4}", True), ("1 1/2", "\\frac{1}{2}", False), ("-1 1/2", "-1.5", True),
    ("[[1, 2], [3, 4]]", "\\begin{pmatrix}1 & 2\\\\3 & 4\\end{pmatrix}", True, "a matrix as nested lists"),
    ("[[1, 2], [4, 3]]", "\\begin{pmatrix}1 & 2\\\\3 & 4\\end{pmatrix}", False),
    ("[[1, 0], [0, 1]]", "\\begin{bmatrix}1&0\\\\0&1\\end{bmatrix}", True),
    ("(1, 2, 3)", "\\begin{pmatrix}1\\\\2\\\\3\\end{pmatrix}", True, "a tuple is the column vector"),
    ("(1, 2, 3)", "\\begin{pmatrix}1\\\\3\\\\2\\end{pmatrix}", False),
    ("\\begin{pmatrix} 3 \\\\ -1 \\end{pmatrix}", "(3, -1)", True),
])
_add("kept strengths", "response", [
    ("so the answer is $\\fbox{42}$.", "42", True, "\\fbox is a box"),
    ("so the answer is $\\fbox{41}$.", "42", False),
    ("First \\boxed{3}, but correcting the sign, the answer is \\boxed{-3}.", "-3", True, "the last box counts"),
    ("The vector is $\\boxed{\\begin{pmatrix} \\frac{1}{2} \\\\ 3 \\end{pmatrix}}$.", "(\\frac12, 3)", True,
     "nested braces in the box"),
])

# ---------------------------------------------------------------------------------------------
# more ordinary responses, written (and labelled) before they were first graded

_add("held-out responses", "response", [
    ("We factor: $x^2+7x+10=(x+2)(x+5)$, so the answer is $\\boxed{(x+2)(x+5)}$.", "x^2+7x+10", True),
    ("Expanding gives \\[\\boxed{x^2+7x+10}.\\]", "(x+2)(x+5)", True),
    ("Expanding gives \\[\\boxed{x^2+7x+12}.\\]", "(x+2)(x+5)", False),
    ("The hypotenuse is $\\sqrt{9^2+6^2} = \\sqrt{117} = \\boxed{3\\sqrt{13}}$.", "3\\sqrt{13}", True),
    ("The hypotenuse is $\\boxed{\\sqrt{117}}$.", "3\\sqrt{13}", True),
    ("The hypotenuse is $\\boxed{\\sqrt{113}}$.", "3\\sqrt{13}", False),
    ("So the mean is $\\boxed{4\\frac{2}{3}}$.", "\\frac{14}{3}", True, "a mixed number"),
    ("So the mean is $\\boxed{\\frac{14}{3}}$.", "\\frac{14}{3}", True),
    ("So the mean is $\\boxed{4.67}$.", "\\frac{14}{3}", False, "two places are too few for an exact answer"),
    ("Thus $x$ lies in $\\boxed{(0, \\infty)}$.", "(0,\\infty)", True),
    ("Thus $x$ lies in $\\boxed{[0, \\infty)}$.", "(0,\\infty)", False),
    ("The solutions are $\\boxed{-3, 3}$.", "-3,3", True), ("The solutions are $\\boxed{3, -3}$.", "-3,3", True),
    ("The solutions are $\\boxed{3}$.", "-3,3", False),
    ("The center is $\\boxed{(1, -2, 3)}$.", "(1,-2,3)", True), ("The center is $\\boxed{(1, 2, 3)}$.", "(1,-2,3)", False),
    ("It costs $\\boxed{\\$32}$.", "32", True), ("The area is $\\boxed{42 \\text{ square feet}}$.", "42", True),
    ("The side is $\\boxed{8 \\text{ cm}}$.", "8", True), ("It takes $\\boxed{4\\text{ hours}}$.", "4", True),
    ("She walks $\\boxed{3.5 \\text{ miles}}$.", "3.5", True), ("She walks $\\boxed{3.4 \\text{ miles}}$.", "3.5", False),
    ("Hence $f^{-1}(x) = \\boxed{\\frac{3}{x}}$.", "3x^{-1}", True),
    ("The slope is $\\boxed{-2}$.", "2", False), ("The probability is $\\boxed{0.5}$.", "\\frac{1}{3}", False),
    ("The probability is $\\boxed{\\frac{1}{2}}$.", "0.5", True),
    ("The answer is $\\boxed{\\text{(B)}}$.", "\\text{(B)}", True), ("The answer is $\\boxed{\\text{(D)}}$.", "\\text{(B)}", False),
    ("We get \\[\\boxed{x = 5}\\]", "5", True), ("We get \\[\\boxed{k = 3}.\\]", "3", True),
    ("so $f(x) = \\boxed{2x}$", "2x", True),
    ("The rate is $\\boxed{10\\%}$.", "10", True, "the gold of a percent question is written without %"),
    ("The rate is $\\boxed{10\\%}$.", "0.1", True), ("The rate is $\\boxed{20\\%}$.", "10", False),
    ("Rationalizing, $\\frac{1}{\\sqrt{3}} = \\boxed{\\frac{\\sqrt{3}}{3}}$.", "\\frac{1}{\\sqrt3}", True),
    ("The roots sum to $\\boxed{2+\\sqrt{3}}$.", "\\sqrt3+2", True), ("$\\boxed{2-\\sqrt{3}}$", "\\sqrt3+2", False),
    ("The set is $\\boxed{\\{-2, 2\\}}$.", "-2, 2", True), ("$\\boxed{2^{-1}}$", "\\frac12", True),
    ("$\\boxed{i}$", "-i", False), ("$\\boxed{-i}$", "-i", True), ("$\\boxed{1.75}$", "\\frac74", True),
    ("$\\boxed{1\\frac{3}{4}}$", "\\frac{7}{4}", True), ("$\\boxed{x^{3}-3x^{2}+3x-1}$", "(x-1)^3", True),
    ("$\\boxed{x^{3}-3x^{2}+3x+1}$", "(x-1)^3", False), ("$\\boxed{\\sqrt{5}}$", "5^{1/2}", True),
    ("$\\boxed{ba^2}$", "a^2b", True), ("$\\boxed{ab^2}$", "a^2b", False),
    ("The line is $\\boxed{y = -\\frac{1}{2}x + 3}$.", "y=-\\frac12x+3", True),
    ("The line is $\\boxed{x + 2y = 6}$.", "y=-\\frac12x+3", True, "the same line, rearranged"),
    ("The line is $\\boxed{x + 2y = 5}$.", "y=-\\frac12x+3", False),
    ("$\\boxed{\\begin{pmatrix} 2 & 1 \\\\ 0 & 3 \\end{pmatrix}}$", "\\begin{pmatrix}2&1\\\\0&3\\end{pmatrix}", True),
    ("$\\boxed{\\begin{pmatrix} 2 & 0 \\\\ 1 & 3 \\end{pmatrix}}$", "\\begin{pmatrix}2&1\\\\0&3\\end{pmatrix}", False),
    ("$\\boxed{\\text{even}}$", "\\text{even}", True), ("$\\boxed{\\text{odd}}$", "\\text{even}", False),
    ("$\\boxed{\\frac{9}{2}}$", "4.5", True), ("$\\boxed{4.50}$", "\\frac92", True),
    ("So the total is $1,000. The answer is $1,000.", "1000", True),
    ("She needs 3 more bags.\nThe answer is 3.", "3", True), ("He pays $15 in total.\n#### $15", "15", True),
    ("He pays 16 in total.\n#### 16", "15", False), ("The final answer is $\\boxed{15.5}$", "15.5", True),
    ("So Janet makes 9 * $2 = $18 every day at the farmers' market.\n#### 18", "18", True),
    ("Janet makes 16 - 3 - 4 = 9 dollars.\n#### 9", "18", False),
    ("It takes 2 + 2/2 = 3 bolts in total.\nThe answer is 3.", "3", True),
    ("The profit is 200,000 - 130,000 = $70,000.\n#### 70000", "70000", True),
    ("The profit is $70,000.\n#### 70,000", "70000", True), ("#### 70,000.00", "70000", True),
    ("So he has 60 - 2*15 = 30 minutes left over.\nThe answer is 30 minutes.", "30", True),
])

# a second batch, also written and labelled before it was first graded (it found the MATH
# thousands separator ",\!", base subscripts, "\$" inside a final-answer line, markdown bold)

_add("held-out answers 2", "answer", [
    ("32348", "32,\\!348", True, "MATH writes thousands as ,\\!"), ("32,\\!348", "32348", True),
    ("32,\\!384", "32,\\!348", False), ("1,\\!000,\\!000", "10^6", True),
    ("4210_5", "4210_{5}", True, "the same base-5 numeral"), ("4211_{5}", "4210_{5}", False),
    ("3\\sqrt{2}", "\\sqrt{18}", True), ("(6,31,-1)", "(6, 31, -1)", True), ("(6,31,1)", "(6, 31, -1)", False),
    ("-1/3", "-\\frac{1}{3}", True), ("11\\sqrt2", "11\\sqrt{2}", True), ("\\frac{243}{625}", "0.3888", True,
     "243/625 is exactly 0.3888"), ("\\frac{\\sqrt{10}}{5}", "\\sqrt{\\frac{2}{5}}", True),
    ("2+2\\sqrt{2}", "2\\sqrt2+2", True), ("6-5i", "6 - 5i", True), ("6+5i", "6 - 5i", False),
    ("\\pi/4", "\\frac{\\pi}{4}", True), ("\\frac{\\pi}{3}", "\\frac{\\pi}{4}", False),
    ("\\begin{pmatrix} -1/3 \\\\ 2/3 \\end{pmatrix}", "\\begin{pmatrix} -\\frac13 \\\\ \\frac23 \\end{pmatrix}", True),
    ("(y^2-1)^2", "y^4-2y^2+1", True), ("(y^2+1)^2", "y^4-2y^2+1", False),
    ("a=2, b=3", "(2,3)", True), ("-2, 1", "1, -2", True), ("\\text{A}", "A", True),
    ("\\text{Evelyn}", "\\text{Evelyn}", True), ("\\text{Evelyn}", "\\text{Emily}", False),
    ("p - q", "p-q", True), ("q - p", "p-q", False), ("10.0", "10", True), ("9.9", "10", False),
])

_add("held-out responses 2", "response", [
    ("Final Answer: The final answer is $\\$18.90$. I hope it is correct.", "18.90", True,
     "an escaped dollar inside the math span"),
    ("Final Answer: The final answer is $\\$18.90$. I hope it is correct.", "18.80", False),
    ("The answer is $\\frac{1}{2}$ of the pie.", "\\frac12", True),
    ("The answer is: $x=\\frac{5}{2}$", "\\frac{5}{2}", True),
    ("**Answer: 42**", "42", True, "markdown bold around the answer line"), ("**Answer: 41**", "42", False),
    ("The answer is **42**.", "42", True), ("The final answer is **$42$**.", "42", True),
    ("I think the answer is 5, but let me check. Actually, the answer is 6.", "6", True, "the last statement counts"),
    ("I think the answer is 5, but let me check. Actually, the answer is 6.", "5", False),
    ("The answer is \\(\\frac{3}{4}\\).", "0.75", True), ("The answer is", "3", False, "cut off"),
    ("So the answer is \\boxed{}", "3", False, "an empty box"), ("The answer is 3 hours.", "3", True),
    ("She has $4.50 left.\n#### 4.5", "4.5", True), ("#### 5.00", "5", True), ("#### 0.25", ".25", True),
    ("The answer is 25%", "25", True), ("So, the final answer is 5.", "5", True),
    ("Step 1: 5 * 4 = 20.\nStep 2: 20 + 2 = 22.\nTherefore, the final answer is 22.", "22", True),
    ("Step 1: 5 * 4 = 20.\nStep 2: 20 + 2 = 22.\nTherefore, the final answer is 22.", "20", False),
    ("Step 1: 5 * 4 = 20.\nStep 2: 20 + 2 =", "22", False, "cut off before the result"),
])

# a third batch in the styles of chat models' outputs, labelled before it was first graded

_add("held-out responses 3", "response", [
    ("## Step 1: Compute the sum\n5 + 7 = 12.\n\nThe final answer is: $\\boxed{12}$", "12", True),
    ("## Step 1: Compute the sum\n5 + 7 = 13.\n\nThe final answer is: $\\boxed{13}$", "12", False),
    ("<think>5 + 7 is 12</think>\nThe sum is $\\boxed{12}$.", "12", True),
    ("Let me verify: $5 + 7 = 12$. \u2713\n\n**Final Answer**\n\\[\n\\boxed{12}\n\\]", "12", True),
    ("**Final Answer**\n\\[\n\\boxed{\\dfrac{7}{3}}\n\\]", "\\frac{7}{3}", True),
    ("**Final Answer**\n\\[\n\\boxed{\\dfrac{3}{7}}\n\\]", "\\frac{7}{3}", False),
    ("**Final Answer**\nThe area is \\(\\boxed{24\\sqrt{3}}\\) square units.", "24\\sqrt3", True),
    ("Thus, the value of $x$ is $\\boxed{-\\frac{5}{2}}$.", "-2.5", True),
    ("Thus, the value of $x$ is $\\boxed{\\frac{5}{2}}$.", "-2.5", False),
    ("The number of ways is $\\binom{8}{3} = \\boxed{56}$.", "56", True),
    ("The number of ways is $\\boxed{\\binom{8}{3}}$.", "56", True, "the box holds an unevaluated count"),
    ("The roots are $x = 1$ and $x = -3$, so the answer is $\\boxed{1, -3}$.", "-3, 1", True),
    ("The roots are $\\boxed{x = 1 \\text{ and } x = -3}$.", "-3, 1", True),
    ("The roots are $\\boxed{x = 1}$.", "-3, 1", False, "one root missing"),
    ("Janet's ducks lay 16 eggs. She eats 3 and bakes with 4, leaving 16 - 3 - 4 = 9 eggs. At $2 each she makes "
     "9 * 2 = $18.\n\nThe answer is $18.", "18", True),
    ("She makes 9 * 2 = $18 per day.\n\nSo the answer is: **$18**", "18", True),
    ("She makes 9 * 2 = $18 per day.\n\nSo the answer is: **$16**", "18", False),
    ("A robe takes 2 bolts of blue fiber and half that much white fiber, so 2 + 1 = 3 bolts.\n\n**Answer: 3**",
     "3", True),
    ("The interval is $\\boxed{[-2, 7]}$.", "[-2,7]", True), ("The interval is $\\boxed{(-2, 7]}$.", "[-2,7]", False),
    ("Hence $\\boxed{x \\in (-\\infty, 1] \\cup [3, \\infty)}$.", "(-\\infty,1]\\cup[3,\\infty)", True),
    ("So $k = \\boxed{\\pm 4}$.", "4, -4", True), ("So $k = \\boxed{4}$.", "4, -4", False),
    ("The probability is $\\boxed{\\tfrac{5}{36}}$.", "\\frac{5}{36}", True),
    ("The probability is $\\boxed{0.139}$.", "\\frac{5}{36}", False, "three digits are too few for an exact answer"),
    ("The remainder is $\\boxed{3}$. (Check: $31 = 4 \\cdot 7 + 3$.)", "3", True, "text after the box"),
    ("The answer is $\\boxed{\\text{No}}$.", "\\text{No}", True), ("The answer is $\\boxed{\\text{Yes}}$.", "\\text{No}", False),
    ("In base 2 that is $\\boxed{1011_2}$.", "1011_2", True), ("In base 2 that is $\\boxed{1101_2}$.", "1011_2", False),
    ("The sum of the series is $\\boxed{\\frac{\\pi^2}{6}}$.", "\\frac{\\pi^2}{6}", True),
    ("The distance is $\\boxed{5\\sqrt{2}\\text{ units}}$.", "5\\sqrt{2}", True),
    ("The average speed is $\\boxed{45 \\text{ mph}}$.", "45", True),
    ("The average speed is $\\boxed{45 \\text{ km/h}}$.", "45", True),
    ("The volume is $\\boxed{36\\pi \\text{ cubic inches}}$.", "36\\pi", True),
    ("Total: 3 + 4 + 5 = 12 apples.\n#### 12 apples", "12", True),
    ("So the total is 12.\n\nWait, I made an error: the total is 14.\n#### 14", "14", True),
    ("The answer is $\\boxed{6}$ cm$^2$.", "6", True),
])

# ---------------------------------------------------------------------------------------------
# garbage: never equal

_add("garbage", "answer", [
    ("garbage {{", "5", False), ("\\frac{", "\\frac{1}{2}", False), ("((((", "1", False), ("", "0", False),
    ("}{", "}{5", False), ("\\boxed{", "1", False),
])


# ---------------------------------------------------------------------------------------------
# the two graders, as the module docstring describes them


def mathlm_verdict(case: Case) -> bool:
    from mathlm.grading import extract_answer, math_equal

    prediction = extract_answer(case.text) if case.kind == "response" else case.text
    return math_equal(prediction, case.gold)


def math_verify_verdict(case: Case) -> bool:
    from math_verify import parse, verify

    text = case.text if case.kind == "response" else f"\\boxed{{{case.text}}}"
    try:
        return bool(verify(parse(f"\\boxed{{{case.gold}}}"), parse(text)))
    except Exception:  # a crash on garbage counts as "not equal", as a grader would have to
        return False


def decisions(verdict) -> tuple[float, list[Case]]:
    """(fraction of CASES decided right, the cases decided wrong) for a verdict function."""
    wrong = [c for c in CASES if verdict(c) != c.correct]
    return 1 - len(wrong) / len(CASES), wrong
