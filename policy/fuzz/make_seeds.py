#!/usr/bin/env python3
"""Writes the small seeds of the `load` fuzz target (seeds/load/small-*): one small store that
compiles and uses every part of the format (every selector of a group, every field type and
class, every treatment on a type it fits, every legal basis, windows, shadow rules, limits, rules
over two files), variants of it that still compile, and one variant per validation error (a
single edit each). The hand-written seeds of the sample federation stay beside them.

Why: libFuzzer mutates bytes, and almost every mutation of a valid store makes it invalid, so a
corpus grown from large seeds alone compiles few stores and reaches the decision code rarely;
and the error paths each need one precise edit. Small seeds that are one edit away from each
outcome let the fuzzer spend its time on combinations instead.

    python3 make_seeds.py                       # writes seeds/load/small-*
    python3 make_seeds.py --check PATH/TO/isnad # also checks each seed with `isnad policy check`:
                                                # the valid ones pass, each bad one fails with
                                                # the error it was written for

Rerun after a change of the store's format (policy/README.md)."""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "seeds", "load")
SEPARATOR = b"\xff"
DAY = "2026-06-01"  # the fuzz target's fixed day

CATALOGUE = """\
federation: f.example
agencies:
  p1: { name: P1, level: federal, endpoint: "https://p1.internal:7601" }
  p2: { name: P2, level: local, emirate: sharjah, endpoint: "https://p2.internal:7602" }
  c1: { name: C1, level: federal }
  c2: { name: C2, level: local, emirate: sharjah }
  c3: { name: C3, level: local, emirate: ajman }
groups:
  fed: { level: federal }
  shj: { emirate: sharjah, description: Sharjah }
  pick: { members: [c1, c3] }
  shj-local: { level: local, emirate: sharjah }
datasets:
  d.one:
    provider: p1
    description: One.
    fields:
      s: { type: string, class: public }
      s2: { type: string, class: internal }
      i: { type: int, class: personal }
      x: { type: double, class: sensitive }
      b: { type: bool, class: personal }
      t: { type: date, class: personal }
      t2: { type: date, class: personal }
      y: { type: bytes, class: internal }
      l: { type: list, class: personal }
  d.two:
    provider: p2
    fields:
      n: { type: int, class: public }
      m: { type: string, class: personal }
purposes:
  pa: { code: A-1, description: Purpose A. }
  pb: { code: B-2 }
"""

RULES_A = """\
rules:
  - id: every-form
    description: Every treatment on a type it fits.
    consumer: c1
    dataset: d.one
    purpose: pa
    legal_basis: statute
    reference: Law 1
    fields:
      s: { mask: { keep_last: 2 } }
      s2: { mask: { keep_first: 3 } }
      i: { generalize: { step: 100 } }
      x: { generalize: { bands: [0, 10, 20] } }
      t: { derive: age_over(18) }
      t2: { derive: year_of }
      y: hash
      b: allow
      l: deny
  - id: dates-by-consent
    consumer: shj
    dataset: d.one
    purpose: pb
    legal_basis: consent
    limit: { requests: 5, per: day }
    valid_from: 2026-01-01
    valid_until: 2027-12-31
    fields:
      t: { generalize: year }
      t2: { generalize: month }
      i: hash
  - id: court
    consumer: pick
    dataset: d.two
    purpose: pa
    legal_basis: court_order
    reference: Case 2
    consent_required: true
    limit: { requests: 100, per: hour }
    fields:
      n: allow
      m: hash
"""

RULES_B = """\
rules:
  - id: group-deny
    consumer: fed
    dataset: d.two
    purpose: pa
    fields:
      m: deny
  - id: trial
    consumer: c1
    dataset: d.one
    purpose: pa
    legal_basis: statute
    reference: Law 1
    status: shadow
    fields:
      s: { mask: { keep_last: 4 } }
      b: deny
  - id: later
    consumer: shj-local
    dataset: d.two
    purpose: pb
    legal_basis: statute
    reference: Law 3
    status: enforce
    valid_from: 2027-01-01
    limit: { requests: 1000000, per: minute }
    fields:
      n: { generalize: { step: 10 } }
"""


def store(catalogue=CATALOGUE, a=RULES_A, b=RULES_B):
    parts = [catalogue.encode() if isinstance(catalogue, str) else catalogue]
    for rules in (a, b):
        if rules is None:
            break
        parts.append(rules.encode() if isinstance(rules, str) else rules)
    return SEPARATOR.join(parts)


def edit(text, old, new):
    assert old in text, old
    return text.replace(old, new, 1)


def cat(old, new):
    return store(catalogue=edit(CATALOGUE, old, new))


def ra(old, new):
    return store(a=edit(RULES_A, old, new))


def rb(old, new):
    return store(b=edit(RULES_B, old, new))


# name -> input; all of these compile.
VALID = {
    "small": store(),
    "small-one-rule-file": store(b=None),
    "small-quoted-transform": ra("{ derive: year_of }", "{ derive: \"year_of\" }"),
    "small-same-form-twice": rb("      b: deny\n", "      b: deny\n      t: { derive: age_over(18) }\n"),
    "small-no-groups": store(
        catalogue=CATALOGUE.split("groups:")[0] + "datasets:" + CATALOGUE.split("datasets:")[1],
        a=RULES_A.replace("consumer: shj\n", "consumer: c2\n").replace("consumer: pick\n", "consumer: c3\n"),
        b=RULES_B.replace("consumer: fed\n", "consumer: c1\n").replace("consumer: shj-local\n", "consumer: c2\n"),
    ),
    "small-statute-consent": ra("    reference: Case 2\n    consent_required: true\n",
                                "    reference: Case 2\n    consent_required: false\n"),
    # c1 has d.two for pa three ways (through pick, through fed, and by its own rule): the
    # decision table merges a grant into one already merged
    "small-three-grants": rb("      n: { generalize: { step: 10 } }\n",
                             "      n: { generalize: { step: 10 } }\n"
                             "  - id: own\n    consumer: c1\n    dataset: d.two\n    purpose: pa\n"
                             "    legal_basis: statute\n    reference: Law 5\n"
                             "    consent_required: true\n    fields:\n      n: allow\n"),
}

# The later rule of the consent contradiction below; `court` (rules/a.yaml) releases `m` too.
CONSENT_RULE_B = edit(RULES_B, "      m: deny\n", "      m: hash\n").replace(
    "consumer: fed\n", "consumer: c1\n").replace(
    "    fields:\n      m: hash", "    legal_basis: statute\n    reference: Law 4\n    fields:\n      m: hash", 1)

# name -> (input, a part of the error `isnad policy check` must print)
INVALID = {
    "agency-name": (cat("  c3: {", "  C3: {"), "agency id"),
    "local-without-emirate": (cat("level: local, emirate: ajman", "level: local"), "name its emirate"),
    "federal-with-emirate": (cat("c1: { name: C1, level: federal }", "c1: { name: C1, level: federal, emirate: dubai }"), "has no emirate"),
    "unknown-emirate": (cat("emirate: ajman", "emirate: atlantis"), "unknown emirate"),
    "endpoint-not-https": (cat('"https://p1.internal:7601"', '"http://p1.internal:7601"'), "https://"),
    "unknown-level": (cat("c1: { name: C1, level: federal }", "c1: { name: C1, level: regional }"), "regional"),
    "group-is-agency": (cat("  fed: { level: federal }", "  c1: { level: federal }"), "name of an agency"),
    "group-no-members": (cat("pick: { members: [c1, c3] }", "pick: { members: [] }"), "no members"),
    "group-unknown-member": (cat("members: [c1, c3]", "members: [c1, c9]"), "unknown agency"),
    "group-no-match": (cat("shj-local: { level: local, emirate: sharjah }", "shj-local: { level: federal, emirate: sharjah }"), "no members"),
    "dataset-name": (cat("  d.two:", "  D.two:"), "dataset name"),
    "dataset-unknown-provider": (cat("provider: p2", "provider: p9"), 'unknown provider agency "p9"'),
    "dataset-provider-no-endpoint": (cat("provider: p2", "provider: c2"), 'provider "c2" has no endpoint'),
    "dataset-no-fields": (cat("      n: { type: int, class: public }\n      m: { type: string, class: personal }\n", "      {}\n"), "no fields"),
    "field-subject": (cat("      n: { type: int", "      subject: { type: int"), "subject"),
    "field-name": (cat("      n: { type: int", "      N: { type: int"), "field name"),
    "field-type": (cat("{ type: int, class: public }", "{ type: integer, class: public }"), "integer"),
    "field-class": (cat("{ type: int, class: public }", "{ type: int, class: secret }"), "secret"),
    "purpose-name": (cat("  pb: {", "  PB: {"), "purpose"),
    "purpose-no-code": (cat("pb: { code: B-2 }", "pb: { description: B }"), "missing field `code`"),
    "catalogue-unknown-key": (cat("federation: f.example\n", "federation: f.example\nversion: 2\n"), "version"),
    "catalogue-duplicate-key": (cat("  c3: { name: C3", "  c2: { name: C3"), "duplicate mapping key: c2"),
    "catalogue-yes": (cat("level: federal, endpoint", "level: yes, endpoint"), "yes"),
    "catalogue-merge-key": (cat("  c3: { name: C3, level: local, emirate: ajman }",
                                "  c3: { <<: { name: C3 }, level: local, emirate: ajman }"), "merge"),
    "catalogue-tag": (cat("description: One.", "description: !secret One."), "tag"),
    "catalogue-two-documents": (store(catalogue=CATALOGUE + "---\nfederation: g.example\n"), "document"),
    "catalogue-not-utf8": (store(catalogue=CATALOGUE.encode().replace(b"Purpose A.", b"Purpose \xc3\x28.")), "UTF-8"),
    "catalogue-empty": (store(catalogue=""), "catalogue.yaml: the file is empty"),
    "unknown-consumer": (ra("consumer: c1\n", "consumer: c9\n"), 'unknown consumer "c9"'),
    "unknown-dataset": (ra("dataset: d.one\n", "dataset: d.nine\n"), "d.nine"),
    "unknown-purpose": (ra("purpose: pa\n", "purpose: pz\n"), "pz"),
    "unknown-field": (ra("      b: allow\n", "      z: allow\n"), 'no field "z"'),
    "unknown-treatment": (ra("      b: allow\n", "      b: permit\n"), "permit"),
    "unknown-transform": (ra("{ derive: year_of }", "{ derive: decade_of }"), "decade_of"),
    "age-over-zero": (ra("age_over(18)", "age_over(0)"), "age_over"),
    "age-over-151": (ra("age_over(18)", "age_over(151)"), "age_over"),
    "mask-65": (ra("keep_last: 2", "keep_last: 65"), "mask"),
    "mask-unknown-option": (ra("keep_last: 2", "keep_middle: 2"), "keep_middle"),
    "step-zero": (ra("step: 100", "step: 0"), "step"),
    "bands-unsorted": (ra("bands: [0, 10, 20]", "bands: [20, 10, 0]"), "bands"),
    "bands-fraction": (ra("bands: [0, 10, 20]", "bands: [0, 10.5, 20]"), "whole numbers"),
    "bands-empty": (ra("bands: [0, 10, 20]", "bands: []"), "bands"),
    "transform-wrong-type": (ra("t: { derive: age_over(18) }", "s: { derive: age_over(18) }").replace(b"      s: { mask: { keep_last: 2 } }\n", b""), "age_over"),
    "hash-on-bool": (ra("      b: allow\n", "      b: hash\n"), "hash"),
    "mask-on-double": (ra("x: { generalize: { bands: [0, 10, 20] } }", "x: { mask: { keep_last: 2 } }"), "of type double"),
    "mask-on-bytes": (ra("      y: hash\n", "      y: { mask: { keep_first: 2 } }\n"), "of type bytes"),
    "mask-as-word": (ra("      y: hash\n", "      y: mask\n"), "mask needs an argument"),
    "generalize-as-word": (ra("      y: hash\n", "      y: generalize\n"), "generalize needs an argument"),
    "hash-with-argument": (ra("      y: hash\n", "      y: { hash: sha256 }\n"), "hash takes no argument"),
    "allow-with-argument": (ra("      b: allow\n", "      b: { allow: true }\n"), "allow takes no argument"),
    "generalize-year-on-int": (rb("n: { generalize: { step: 10 } }", "n: { generalize: year }"), "generalize"),
    "two-treatments": (ra("      y: hash\n", "      y: { derive: year_of, mask: { keep_last: 1 } }\n"), "exactly one key"),
    "statute-no-reference": (ra("    reference: Law 1\n", ""), "reference"),
    "court-no-reference": (ra("    reference: Case 2\n", ""), "reference"),
    "no-legal-basis": (ra("    legal_basis: consent\n", ""), "legal_basis"),
    "unknown-legal-basis": (ra("legal_basis: consent", "legal_basis: contract"), "contract"),
    "consent-not-required": (ra("    legal_basis: consent\n", "    legal_basis: consent\n    consent_required: false\n"), "consent"),
    "duplicate-rule-id": (rb("id: trial", "id: every-form"), "every-form"),
    "rule-id-name": (rb("id: trial", "id: Trial"), "rule id"),
    "contradiction": (rb("    status: shadow\n", ""), "contradict"),
    "contradiction-consent": (store(b=CONSENT_RULE_B), "without consent, but rule"),
    "contradiction-consent-later": (store(
        a=edit(RULES_A, "    consent_required: true\n", "    consent_required: false\n"),
        b=edit(CONSENT_RULE_B, "    reference: Law 4\n", "    reference: Law 4\n    consent_required: true\n")),
        "with consent, but rule"),
    "contradiction-windows": (store(
        a=edit(RULES_A, "    reference: Law 1\n    fields:\n      s: { mask",
               "    reference: Law 1\n    valid_from: 2026-01-01\n    valid_until: 2026-12-31\n"
               "    fields:\n      s: { mask"),
        b=edit(RULES_B, "    status: shadow\n", "    valid_from: 2026-03-01\n    valid_until: 2027-06-30\n")),
        "2026-03-01 to 2027-06-30 and 2026-01-01 to 2026-12-31"),
    "expired": (ra("valid_until: 2027-12-31", "valid_until: 2026-05-31"), "expired"),
    "until-before-from": (ra("valid_until: 2027-12-31", "valid_until: 2025-12-31"), "before"),
    "bad-date": (ra("valid_from: 2026-01-01", "valid_from: 2026-02-30"), "date"),
    "unknown-status": (rb("status: shadow", "status: draft"), "draft"),
    "limit-zero": (ra("requests: 5", "requests: 0"), "limit"),
    "limit-too-high": (ra("requests: 5", "requests: 1000001"), "limit"),
    "limit-period": (ra("per: day", "per: week"), "week"),
    "limit-on-deny": (rb("      m: deny\n", "      m: deny\n").replace(b"    purpose: pa\n    fields:\n      m: deny",
                                                               b"    purpose: pa\n    limit: { requests: 3, per: day }\n    fields:\n      m: deny"), "limit"),
    "no-fields": (rb("    fields:\n      n: { generalize: { step: 10 } }\n", "    fields: {}\n"), "no fields"),
    "rule-unknown-key": (ra("    description: Every", "    owner: x\n    description: Every"), "owner"),
    "rule-duplicate-key": (ra("    dataset: d.two\n", "    dataset: d.two\n    dataset: d.one\n"), "dataset"),
    "rules-not-a-list": (store(a="rules:\n  id: x\n"), "expected sequence"),
    "rules-empty": (store(a=""), "rules/a.yaml: the file is empty"),
    "rules-no-bool": (ra("consent_required: true", "consent_required: no"), "boolean"),
    "rules-nested": (ra("      b: allow\n", "      b: { mask: " + "[" * 40 + "]" * 40 + " }\n"), "nest"),
}


# The same store in block style, one key per line, for the shape variants below.
BLOCK_CATALOGUE = """\
federation: f.example
agencies:
  p1:
    name: P1
    level: federal
    endpoint: "https://p1.internal:7601"
  c2:
    name: C2
    level: local
    emirate: sharjah
groups:
  shj:
    description: Sharjah
    level: local
    emirate: sharjah
    members:
      - c2
datasets:
  d.one:
    provider: p1
    description: One.
    fields:
      t:
        type: date
        class: personal
purposes:
  pa:
    code: A-1
    description: Purpose A.
"""

BLOCK_RULES = """\
rules:
  - id: block
    description: Every key of a rule.
    consumer: shj
    dataset: d.one
    purpose: pa
    legal_basis: statute
    reference: Law 1
    consent_required: true
    valid_from: 2026-01-01
    valid_until: 2027-12-31
    status: enforce
    limit:
      requests: 5
      per: day
    fields:
      t:
        derive: age_over(18)
"""

# Values a key's value is replaced with: the wrong shapes, and nothing.
SHAPES = {"list": "[1, 2]", "map": "{ a: 1 }", "null": "~", "number": "7", "empty": '""'}


def shape_variants():
    """For every key line of the block store: the key twice, the key left out, and its value
    replaced by each of SHAPES. Each reaches one branch of the derived deserializers (a
    duplicate, a missing or an unexpected type of that key of that document), which byte
    mutation finds only by luck. Whether each compiles is not checked: most do not."""
    variants = {}
    for part, text in (("cat", BLOCK_CATALOGUE), ("rule", BLOCK_RULES)):
        lines = text.splitlines(keepends=True)
        for i, line in enumerate(lines):
            key, colon, value = line.strip().removeprefix("- ").partition(":")
            if not colon or not key.replace("_", "").replace(".", "").isalnum():
                continue
            indent = line[: len(line) - len(line.lstrip())]
            if line.strip().startswith("- "):
                indent += "  "
            # the lines that belong to this key: deeper-indented ones after it
            end = i + 1
            while end < len(lines) and len(lines[end]) - len(lines[end].lstrip()) > len(indent):
                end += 1
            block = "".join(lines[i:end])
            edits = {"twice": block + indent + block.lstrip() if not line.strip().startswith("- ")
                              else block + indent + block.strip().removeprefix("- ") + "\n"}
            if not line.strip().startswith("- "):
                edits["missing"] = ""
            for shape, written in SHAPES.items():
                head = line[: line.index(":") + 1]
                edits[shape] = head + " " + written + "\n"
            for edit, replacement in edits.items():
                changed = "".join(lines[:i]) + replacement + "".join(lines[end:])
                name = f"shape-{part}-{i:02}-{key}-{edit}"
                if part == "cat":
                    variants[name] = store(catalogue=changed, a=BLOCK_RULES, b=None)
                else:
                    variants[name] = store(catalogue=BLOCK_CATALOGUE, a=changed, b=None)
    return variants


# Derive and generalize written as text take the parser of `Transform::parse`: its spacing,
# signs, zeros and bounds.
TEXT_FORMS = [
    "age_over(18)", " age_over( 18 ) ", "age_over(+18)", "age_over(018)", "age_over(-1)",
    "age_over(4294967296)", "age_over()", "age_over(18", "age_over", "age_over(1)(2)",
    "year_of", "year_of()", "hash", "mask(keep_last=4)", "mask(keep_first = 0)", "mask(keep_last)",
    "generalize(year)", "generalize(month)", "generalize(step=10)", "generalize(step=-5)",
    "generalize(bands=[0, 10, 20])", "generalize(bands=[])", "generalize(bands=[1,,2])",
    "generalize(bands=1,2)", "generalize(day)", "AGE_OVER(18)", "age_over(\u0661\u0668)",
    # the integer parsers' own branches: their short and long paths, both ends of each type,
    # one past them, signs and zeros on every number a transform takes
    "age_over(4294967295)", "age_over(00000000000000000018)", "mask(keep_last=+4)",
    "mask(keep_first=04)", "mask(keep_last=4294967296)", "mask(keep_first=-0)",
    "generalize(step=+10)", "generalize(step=010)", "generalize(step=-0)", "generalize(step=-)",
    "generalize(step=9223372036854775807)", "generalize(step=9223372036854775808)",
    "generalize(step=-9223372036854775808)", "generalize(step=-9223372036854775809)",
    "generalize(bands=[-9223372036854775808, 0, 9223372036854775807])",
    "generalize(bands=[+1, 02, -03])", "generalize(bands=[000000000000000000000001, 2])",
]
# Every length of number each parser meets, to one past its type's longest: the standard
# library's parsing and printing of integers, inlined into `canonical`, takes other branches
# for each length (unrolled loops, the short path that cannot overflow).
DIGITS = "98765432109876543210"
TEXT_FORMS += [f"age_over({DIGITS[:n]})" for n in range(1, 12)]
TEXT_FORMS += [f"generalize(step={sign}{DIGITS[:n]})" for sign in ("", "-") for n in range(1, 21)]
# and a non-digit after each of those lengths
TEXT_FORMS += [f"age_over({DIGITS[:n]}x)" for n in range(0, 11)]
TEXT_FORMS += [f"generalize(step={sign}{DIGITS[:n]}x)" for sign in ("", "-") for n in range(0, 20)]


def text_variants():
    return {
        f"text-{i:02}": store(catalogue=BLOCK_CATALOGUE,
                              a=edit(BLOCK_RULES, "derive: age_over(18)", "derive: " + json_str(form)),
                              b=None)
        for i, form in enumerate(TEXT_FORMS)
    }


def json_str(text):
    """A double-quoted YAML scalar (JSON's escapes are YAML's)."""
    return json.dumps(text, ensure_ascii=False)


def write():
    os.makedirs(OUT, exist_ok=True)
    for old in os.listdir(OUT):
        if old.startswith("small"):
            os.remove(os.path.join(OUT, old))
    for name, data in VALID.items():
        path = name if name.startswith("small") else "small-" + name
        with open(os.path.join(OUT, path), "wb") as f:
            f.write(data)
    for name, (data, _) in INVALID.items():
        with open(os.path.join(OUT, "small-bad-" + name), "wb") as f:
            f.write(data)
    extra = {**shape_variants(), **text_variants()}
    for name, data in extra.items():
        with open(os.path.join(OUT, "small-" + name), "wb") as f:
            f.write(data)
    print(f"wrote {len(VALID)} valid, {len(INVALID)} invalid and {len(extra)} shape and text "
          f"seeds to {OUT}")


def check(isnad):
    """Each valid seed passes `isnad policy check`; each bad one fails, printing its error."""
    failures = 0
    cases = [(n, d, None) for n, d in VALID.items()] + [(n, d, e) for n, (d, e) in INVALID.items()]
    # the block store itself compiles, so its variants differ from a valid store by one edit
    cases.append(("block", store(catalogue=BLOCK_CATALOGUE, a=BLOCK_RULES, b=None), None))
    for name, data, expected in cases:
        with tempfile.TemporaryDirectory() as tmp:
            parts = data.split(SEPARATOR)
            with open(os.path.join(tmp, "catalogue.yaml"), "wb") as f:
                f.write(parts[0])
            os.mkdir(os.path.join(tmp, "rules"))
            for file, rules in zip(["a.yaml", "b.yaml"], parts[1:3]):
                with open(os.path.join(tmp, "rules", file), "wb") as f:
                    f.write(rules)
            run = subprocess.run([isnad, "policy", "check", tmp, "--date", DAY],
                                 capture_output=True, text=True, errors="replace")
            # the first line names the (temporary) directory; the errors follow it
            said = "\n".join((run.stdout + run.stderr).strip().splitlines()[1:])
            if expected is None and run.returncode != 0:
                print(f"FAIL {name}: does not compile:\n{said}\n")
                failures += 1
            elif expected is not None and (run.returncode == 0 or expected.lower() not in said.lower()):
                print(f"FAIL {name}: exit {run.returncode}, wanted an error with {expected!r}:\n{said}\n")
                failures += 1
    print(f"checked {len(cases)} seeds: {failures} failed")
    return failures == 0


if __name__ == "__main__":
    write()
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        sys.exit(0 if check(sys.argv[2]) else 1)
