"""Writes text_metrics.json: BLEU (tokenize 13a and zh) and chrF computed by the sacrebleu package itself
for the hypothesis/reference pairs below, corpus-level and sentence-level, and what sacreBLEU's 13a, zh and
char tokenizers make of chosen strings. tests/core/data/test_text_metrics.cpp checks that
core/data/text_metrics.cpp gives the same numbers and the same tokenized text.

sacrebleu is not a Debian package; install it into a scratch virtual environment, not the system:

    python3 -m venv /tmp/sb && /tmp/sb/bin/pip install sacrebleu==2.6.0
    /tmp/sb/bin/python tests/reference/text_metrics.py

The committed file was written by sacrebleu 2.6.0 (Python 3.11). The file records the version; the
pairs are fixed, so running it again reproduces the file.

Conventions of the fixture:
- "corpus" BLEU is sacrebleu.corpus_bleu (effective order off), "sentence" BLEU is sacrebleu.sentence_bleu
  (effective order on), both with smoothing 'exp'; chrF is sacrebleu's defaults (char order 6, word
  order 0, beta 2, whitespace removed).
- Every pair is scored alone (corpus and sentence), and each group of pairs as one corpus.
"""
import json
import os

import sacrebleu
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
from sacrebleu.tokenizers.tokenizer_char import TokenizerChar
from sacrebleu.tokenizers.tokenizer_zh import TokenizerZh

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "text_metrics.json")

# (name, hypothesis, reference)
ENGLISH = [
    ("simple", "The cat sat on the mat.", "The cat is sitting on the mat."),
    ("numbers", "It costs $3,000.50 (about 2,700 euros) in 2024-2025.",
     "The price is $3,000.50, roughly 2,700 euros, for 2024-2025."),
    ("hyphens_quotes", "She said, \"well-known state-of-the-art models aren't cheap.\"",
     "She said: \"State-of-the-art models are not cheap,\" didn't she?"),
    ("entities", "Tom &amp; Jerry &quot;live&quot; at 5&lt;6 &gt; 4 &amp;lt;",
     "Tom & Jerry \"live\" at 5<6 > 4 <"),
    ("longer_than_reference", "A very long hypothesis that goes on and on and on about the weather today.",
     "The weather today."),
    ("no_4gram_match", "apple banana cherry date fig", "fig date cherry banana apple"),
    ("bigram_no_trigram", "the quick fox and the lazy dog", "the quick brown fox jumps over the lazy old dog"),
    ("empty_hypothesis", "", "Nothing was produced here."),
    ("version_numbers", "Version 1.2.3, built on 3.14 and 2,5. Done...", "Version 1.2.3 was built on 3.14, 2,5 ."),
    ("unicode_punctuation", "Café – naïve “quotes” … done—ok", "Cafe - naive \"quotes\" ... done - ok"),
    ("skipped_and_newline", "The data-\nset was <skipped> big\nand clean.", "The dataset was big and clean."),
    ("trailing_whitespace", "Hello world.  \t\u3000", "Hello, world!"),
    ("identical", "Exactly the same sentence, word for word.", "Exactly the same sentence, word for word."),
]

CHINESE = [
    ("zh_simple", "我们今天去公园散步，天气很好。", "今天我们去公园散步了，天气非常好。"),
    ("zh_latin_digits", "他在2024年买了一台iPhone 15 Pro，花了8,999元。", "他2024年花8,999元买了iPhone 15 Pro。"),
    ("zh_quotes", "“你好！”她说：“欢迎来到北京（中国）。”", "她说：“你好，欢迎来到中国北京！”"),
    ("zh_fullwidth", "ＡＢＣ１２３测试，ok.", "ABC123测试,ok."),
    ("zh_ideographic_space", "这是　一个　测试", "这是一个测试"),
    ("zh_extension_b", "𠀀字𠀁和字", "𠀀字和𠀁字"),
    ("zh_dashes_ellipsis", "等等……好吧——走吧 → 3×4", "等一下……好吧，走吧 → 3×4"),
    ("zh_longer", "这个句子比参考译文长得多，而且包含了很多额外的词语和内容。", "句子很短。"),
    ("zh_empty_hypothesis", "", "没有输出。"),
    ("zh_entities_not_unescaped", "A&amp;B 和 &quot;C&quot;", "A&B 和 \"C\""),
]

# Strings whose tokenized text the test compares, besides every hypothesis and reference above.
TOKENIZE_EXTRA = [
    "",
    "   ",
    "a.b,c 1.5 1,5 .5 5. a-b 5-6 x-5 \"q\" it's {x}[y](z) #1 @me 50% a/b a\\b ~`^_|",
    "...,,,--- 1..2 ,1 1, a.1 1.a",
    "&quot;&amp;&lt;&gt;&amp;quot; <skipped> end-\nline\nnext",
    "tab\tand\u00a0nbsp\u2009thin\u202fnarrow\u3000ideo",
    "€5 £3 ¥7 — – ‘single’ “double” …",
    "汉字テストかな한국어 ①② ㄅㄆ ﹏ ︰",
    "𠀀𪚥 U+2000\u2000x U+2001\u2001y",
]


def bleu_json(score):
    return {
        "score": score.score,
        "precisions": list(score.precisions),
        "counts": list(score.counts),
        "totals": list(score.totals),
        "bp": score.bp,
        "sys_len": score.sys_len,
        "ref_len": score.ref_len,
    }


def score_pairs(pairs):
    hyps = [h for _, h, _ in pairs]
    refs = [r for _, _, r in pairs]
    return {
        "bleu": {tok: bleu_json(sacrebleu.corpus_bleu(hyps, [refs], tokenize=tok)) for tok in ("13a", "zh")},
        "chrf": sacrebleu.corpus_chrf(hyps, [refs]).score,
    }


def main():
    assert BLEU().smooth_method == "exp" and not BLEU().effective_order
    assert CHRF().char_order == 6 and CHRF().word_order == 0 and CHRF().beta == 2
    pairs = []
    for group, cases in (("english", ENGLISH), ("chinese", CHINESE)):
        for name, hyp, ref in cases:
            entry = {"name": name, "group": group, "hypothesis": hyp, "reference": ref, "bleu": {}}
            for tok in ("13a", "zh"):
                entry["bleu"][tok] = {
                    "corpus": bleu_json(sacrebleu.corpus_bleu([hyp], [[ref]], tokenize=tok)),
                    "sentence": bleu_json(sacrebleu.sentence_bleu(hyp, [ref], tokenize=tok)),
                }
            entry["chrf"] = {
                "corpus": sacrebleu.corpus_chrf([hyp], [[ref]]).score,
                "sentence": sacrebleu.sentence_chrf(hyp, [ref]).score,
            }
            pairs.append(entry)
    corpora = [
        {"name": "english", **score_pairs(ENGLISH)},
        {"name": "chinese", **score_pairs(CHINESE)},
        {"name": "all", **score_pairs(ENGLISH + CHINESE)},
    ]
    tokenizers = {"13a": Tokenizer13a(), "zh": TokenizerZh(), "char": TokenizerChar()}
    texts = TOKENIZE_EXTRA + [h for _, h, _ in ENGLISH + CHINESE] + [r for _, _, r in ENGLISH + CHINESE]
    tokenized = [{"text": t, **{name: tok(t) for name, tok in tokenizers.items()}} for t in texts]
    fixture = {
        "generator": "tests/reference/text_metrics.py",
        "sacrebleu_version": sacrebleu.__version__,
        "pairs": pairs,
        "corpora": corpora,
        "tokenized": tokenized,
    }
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(fixture, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {OUT}: {len(pairs)} pairs, {len(corpora)} corpora, {len(tokenized)} tokenized strings "
          f"(sacrebleu {sacrebleu.__version__})")


if __name__ == "__main__":
    main()
