#!/usr/bin/env python3
"""Writes the tokenizer test corpus: strings and the ids HF tokenizers gives them.

    python3 tools/gen_tokenizer_corpus.py [--out tests/data/tokenizer] [--models models/tokenizers]

Outputs (JSON Lines, committed; tests/test_tokenizer.cpp reads them without Python):

  corpus.jsonl   one object per string: {"text": …, "<vocab>": [ids…], "dec.<vocab>": "…"} for the
                 vocabularies qwen3, deepseek_v3, llama3_1. Ids come from
                 tokenizers.Tokenizer.from_file(…).encode(text, add_special_tokens=False).
                 "dec.<vocab>" is tokenizers' decode(ids, skip_special_tokens=False) and is present
                 only where it differs from the text (NFC normalization, for instance).
  synthetic/<name>/tokenizer.json, synthetic.jsonl
                 small byte-level BPE tokenizers (trained here on a fixed text) whose pre-tokenizers,
                 normalizers, added-token flags and templates exercise what the three real files
                 do not (Split behaviours and invert, String patterns, Digits, GPT-2 ByteLevel regex
                 with add_prefix_space, lstrip/rstrip/single_word/normalized, NFKC, legacy "a b"
                 merges, a TemplateProcessing with BOS and EOS), with tokenizers' ids for a set of
                 strings: {"tok": name, "text": …, "ids": […], "ids_special": […], "dec": "…"}.
  special.jsonl  a few dozen strings with the ids of transformers' AutoTokenizer and
                 add_special_tokens=True ("<vocab>"), add_special_tokens=False ("plain.<vocab>"), and
                 tokenizers' decode(…, skip_special_tokens=True) of the former ("skip.<vocab>").

The random part is seeded, so the output is reproducible for a given tokenizers version (0.22.2).
Random characters are drawn from code points assigned in Python's unicodedata (Unicode 14.0, the
version of Debian's Oniguruma 6.9.8 too), skipping the ~170 characters that HF's Unicode-9.0
normalizer does not know: see docs/tokenizer.md, "Known gaps".
"""
import argparse
import json
import os
import random
import sys
import unicodedata

VOCABS = ["qwen3", "deepseek_v3", "llama3_1"]


# ------------------------------------------------------------------------------------------------
# Hand-written strings.

MULTILINGUAL = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello, world! How's it going?",
    "我们的目标是构建一个高效的推理引擎。",
    "北京是中华人民共和国的首都，人口超过两千万。",
    "繁體中文與简体中文混合：臺灣、台湾。",
    "日本語のテキスト：ひらがな、カタカナ、漢字が混ざっています。",
    "ｶﾀｶﾅ半角とカタカナ全角。",
    "東京タワーは333メートルです。",
    "한국어 텍스트입니다. 안녕하세요, 세계!",
    "훈민정음 ㄱㄴㄷ ㅏㅑㅓ 한글",
    "مرحبا بالعالم! هذه جملة عربية مع أرقام ١٢٣٤٥.",
    "اللُّغَةُ العَرَبِيَّةُ مع التشكيل",
    "नमस्ते दुनिया! यह हिंदी का वाक्य है। १२३४",
    "ภาษาไทยไม่มีช่องว่างระหว่างคำ สวัสดีครับ",
    "Привет, мир! Съешь же ещё этих мягких французских булок.",
    "Ελληνικά: Γειά σου Κόσμε! ΑΒΓΔ αβγδ ς",
    "Tiếng Việt có dấu: Xin chào thế giới, người Việt Nam.",
    "Đặng Thị Ngọc Hưởng ở Hà Nội ăn phở.",
    "עברית: שלום עולם!",
    "বাংলা ভাষা সুন্দর।",
    "தமிழ் மொழி",
    "ქართული ენა",
    "Հայերեն լեզու",
    "አማርኛ ቋንቋ",
    "Ümlaüte: Grüße aus Köln, Straße, Øresund, Åland, Ærø.",
    "Français : à l'école, où est le garçon ? Très bien !",
    "Español: ¿Dónde está el niño? ¡Mañana!",
    "Polski: Zażółć gęślą jaźń.",
    "Türkçe: İstanbul'da ılık bir gün. IıİiŞşĞğ",
    "Ελληνικό ερωτηματικό; και άνω τελεία·",
    "Mixed 中文 English 日本語 한국어 العربية हिन्दी ไทย русский",
    "ﬁ ﬂ ﬀ ligatures and ℌ𝔢𝔩𝔩𝔬 math letters 𝐀𝐁𝐂 𝟏𝟐𝟑",
    "Combining: e\u0301 a\u0308 o\u0302 n\u0303 c\u0327 A\u030a \u1100\u1161\u11a8",
    "Zalgo: Z\u0351\u036b\u0343a\u0336\u0315l\u0334\u0352g\u0337\u0358o\u0358!",
    "Devanagari conjuncts: क्ष त्र ज्ञ श्र",
    "Thai tone marks: ก่า ก้า ก๊า ก๋า",
    "Ligature test: ﷺ ﷽",
    "Cherokee: ᏣᎳᎩ, Mongolian: ᠮᠣᠩᠭᠣᠯ, Tibetan: བོད་ཡིག",
    "Sinhala: සිංහල, Khmer: ភាសាខ្មែរ, Lao: ພາສາລາວ, Myanmar: မြန်မာ",
    "CJK ext B: 𠀀𠀁𠀂 𪜀 𫝀 compatibility: 豈更車",
]

EMOJI = [
    "I ❤️ tokenizers 😀😃😄😁",
    "Family: 👨‍👩‍👧‍👦 and 👩‍❤️‍💋‍👨",
    "Skin tones: 👍🏻 👍🏼 👍🏽 👍🏾 👍🏿",
    "Flags: 🇺🇸 🇯🇵 🇩🇪 🇨🇳 🏴󠁧󠁢󠁳󠁣󠁴󠁿",
    "Keycaps: 1️⃣ 2️⃣ #️⃣ *️⃣",
    "🧑🏽‍💻 writes code; 🧑🏿‍🚀 flies; 🏳️‍🌈 🏳️‍⚧️",
    "Emoji without spaces:🔥🔥🔥💯💯✨✨🚀",
    "text😀text😀😀text",
    "❤‍🔥 🫠 🫶🏼 🪸 🫧",  # Unicode 14 emoji; 15.0+ ones are a known gap (docs/tokenizer.md)
    "©️®️™️ ↔️ ▶️ ⏩ ☀️☁️☂️",
]

CODE = [
    "def foo(x):\n    return x * 2\n",
    "def f(a, b=None, *args, **kwargs):\n\tif a is None:\n\t\treturn []\n\treturn [a, b]\r\n",
    "int main(int argc, char** argv) {\n  std::cout << \"hi\" << std::endl;\n  return 0;\n}\n",
    "for (let i = 0; i < n; ++i) { arr[i] = i ** 2; } // comment",
    "const x = {'a': 1, \"b\": [1, 2, 3], c: null};",
    "SELECT id, name FROM users WHERE age >= 18 AND name LIKE '%smith%';",
    "<html><body><div class=\"x\">Hello &amp; welcome</div></body></html>",
    "#!/bin/bash\nset -euo pipefail\nfor f in *.txt; do echo \"$f\"; done\n",
    "regex: ^(?:[a-z0-9!#$%&'*+/=?^_`{|}~-]+)@example\\.com$",
    "{\"key\": \"value\", \"list\": [1, 2.5, -3e10, true, false, null]}",
    "x = a->b; y = c::d<e>; z = f >>= 2; w = g ?? h; v = i?.j",
    "    indented with spaces\n\tindented with tab\n  \t mixed\n",
    "if (a != b && c == d || !e) { return; }",
    "print(f\"{name!r:>10} = {value:.3f}\")",
    "fn main() -> Result<(), Box<dyn Error>> { Ok(()) }",
    "$ git commit -m 'Fix: handle \\r\\n line endings'",
    "Windows line\r\nendings\r\n\r\nhere\r\n",
    "Old Mac\rline endings\r\r",
    "path/to/file_name-v2.0.tar.gz C:\\Users\\name\\Documents",
    "https://example.com/path?query=1&other=two#fragment",
    "user@example.com, first.last+tag@sub.domain.org",
    "__init__ __main__ _private self.__dunder",
    "camelCaseWord PascalCaseWord snake_case_word SCREAMING_CASE kebab-case",
    "a=1;b=2;c=3;;;;;",
    "```python\nimport numpy as np\nnp.zeros((3, 3))\n```",
    "// TODO(someone): fix this!!!\n/* block\n * comment */",
    "    \n    \n\n\n        code after blank lines",
    "\t\t\tdeeply\t\ttabbed\ttext\t",
]

NUMBERS = []
for n in range(1, 41):
    NUMBERS.append("".join(str((i * 7 + n) % 10) for i in range(n)))
NUMBERS += [
    "1,234,567.89", "-0.000123", "3.14159265358979323846", "1e-10 2E+5", "0x1F 0b1010 0o777",
    "2024-01-15T12:34:56Z", "+1 (555) 123-4567", "$1,000,000 €99.99 £5 ¥1000", "50% 100‰",
    "v1.2.3-beta.4", "IPv4 192.168.0.1 IPv6 ::1", "abc123def456", "123abc", "a1b2c3d4",
    "١٢٣٤٥٦٧٨٩٠", "१२३४५६७८९०", "１２３４５６７８９０", "①②③ ⅠⅡⅢ ¼½¾ ²³",
    "00000000000000000000", "9999999999999999999999", "12 345 678", "1 2 3 4 5 6 7 8 9 10",
]

WHITESPACE = [
    " ", "  ", "   ", "    ", "\t", "\n", "\r\n", "\n\n\n", " \n ", "\t \t", "a  b", "a   b", "a\t\tb",
    "a \n b", "a\n\nb", "a \r\n b", "trailing space ", "trailing spaces    ", "  leading spaces",
    "\u00a0nbsp\u00a0here\u00a0", "ideographic\u3000space", "line\u2028separator\u2029para",
    "thin\u2009space hair\u200aspace", "em\u2003space en\u2002space", "zero\u200bwidth\u200cjoiner\u200d",
    "\u0085next line", "   \t\n\r\n  x", "x\n   \n   y", " ".join(["word"] * 20), "a" + " " * 50 + "b",
    "\n" * 10 + "x", "x" + "\r\n" * 5, "\t" * 8 + "tabs", " \u00a0 \u3000 ", "\u180e mongolian vowel sep",
    "\ufeffBOM at start", "\u200e\u200fLTR RTL marks\u202a\u202c",
]

CONTRACTIONS = [
    "don't DON'T Don't dOn'T", "We're WE'RE We'Re we'RE", "I'm I'M i'm", "they'll THEY'LL They'Ll",
    "she'd SHE'D", "it's IT'S It'S", "you've YOU'VE You'Ve", "'s 't 're 've 'm 'll 'd",
    "'S 'T 'RE 'VE 'M 'LL 'D", "don’t we’re it’s (curly)", "rock 'n' roll", "'''triple'''",
    "it'ſ (long s) it'K (Kelvin sign)", "O'Neil's dog's bone", "'tis 'twas", "y'all'd've",
    "' s ' t", "''", "'", "'a 'b 'c 'x 'y 'z", "L'ÉCOLE D'ÉTÉ", "\"quoted\" 'single'",
]

FULLWIDTH = [
    "ＡＢＣＤＥ ａｂｃｄｅ", "全角：，。！？；（）【】「」『』", "ｈｔｔｐ：／／ｅｘａｍｐｌｅ．ｃｏｍ",
    "半角ｶﾅ ﾃﾞﾊﾞｯｸﾞ", "＂ｑｕｏｔｅ＂ ＇ｓ", "～！＠＃＄％＾＆＊",
]

CONTROL = [
    "\x00", "a\x00b", "\x00\x00\x00", "bell\x07 backspace\x08 vt\x0b ff\x0c", "esc\x1b[31mred\x1b[0m",
    "del\x7f", "c1 \x80\x81\x9f controls", "".join(chr(c) for c in range(0, 32)), "\x01\x02\x03abc",
    "nul in \x00 the middle \x00", "\ufffd replacement", "\ufffe\uffff noncharacters", "\ue000 private use \uf8ff",
    "\U000f0000 plane 15 PUA", "soft\u00adhyphen", "word\u2060joiner", "variation\ufe0fselector\ufe0e",
]


def added_token_strings(specials):
    """Strings with each vocabulary's added tokens inside text, whole and broken."""
    out = []
    words = ["hello", " world", "\n", "x", "", " ", "你好", "'s", "123"]
    for i, tok in enumerate(specials):
        a, b = words[i % len(words)], words[(i * 3 + 1) % len(words)]
        out.append(a + tok + b)
        out.append(tok + tok)
        out.append(" " + tok + " ")
        if len(tok) > 2:
            out.append(tok[:-1] + " " + tok[1:])  # broken copies must not match
    return out


SPECIAL_TEXT = [
    "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n<think>\nhmm\n</think>\n\nHi!<|im_end|>",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
    "<｜begin▁of▁sentence｜><｜User｜>Hello<｜Assistant｜></think>Hi<｜end▁of▁sentence｜>",
    "<think></think><tool_call>{\"name\": \"f\"}</tool_call>",
    "<|endoftext|><|endoftext|>", "<|im_end|>x<|im_end", "<|fim_prefix|>a<|fim_suffix|>b<|fim_middle|>",
    "<｜fim▁begin｜>x<｜fim▁hole｜>y<｜fim▁end｜>", "<|reserved_special_token_5|> <|python_tag|>",
    "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>", "<|vision_start|><|image_pad|><|vision_end|>",
    "text <think> inner </think> text", "<THINK> not a token </Think>", "<think >", "< think>",
]


# ------------------------------------------------------------------------------------------------
# Seeded random strings.

def hf_unknown_normalization_chars():
    """Characters whose normalization HF tokenizers does not know.

    tokenizers normalizes with unicode-normalization-alignments 0.1.12, which carries Unicode 9.0
    tables: a later character with a decomposition or a combining class is left alone and never
    reordered. utf8proc (Unicode 15) does know them, so strings with these characters normalize
    differently (docs/tokenizer.md, "Known gaps"). Found by comparing with Python's unicodedata."""
    from tokenizers import normalizers
    nfd, nfkd = normalizers.NFD(), normalizers.NFKD()
    unknown = set()
    for cp in range(0x110000):
        if 0xD800 <= cp < 0xE000:
            continue
        c = chr(cp)
        if unicodedata.category(c) == "Cn" or not (unicodedata.decomposition(c) or unicodedata.combining(c)):
            continue
        if nfd.normalize_str(c) != unicodedata.normalize("NFD", c) or \
                nfkd.normalize_str(c) != unicodedata.normalize("NFKD", c):
            unknown.add(c)
            continue
        k = unicodedata.combining(c)
        if k:  # does HF reorder it against another mark?
            probe = (c + "\u0334") if k > 1 else ("\u0301" + c)
            if nfd.normalize_str(probe) != unicodedata.normalize("NFD", probe):
                unknown.add(c)
    return unknown


def assigned_chars():
    """Code points assigned in Python's Unicode (14.0), minus surrogates and the characters HF's
    normalizer does not know (see above)."""
    unknown = hf_unknown_normalization_chars()
    chars = []
    for cp in range(0x110000):
        if 0xD800 <= cp < 0xE000:
            continue
        c = chr(cp)
        if unicodedata.category(c) != "Cn" and c not in unknown:
            chars.append(c)
    return chars


def random_strings(rng, n_fragments, n_codepoints, n_bytes):
    assigned = assigned_chars()
    by_cat = {}
    for c in assigned:
        by_cat.setdefault(unicodedata.category(c)[0], []).append(c)
    cjk = [chr(c) for c in range(0x4E00, 0x9FA6)]
    kana = [chr(c) for c in range(0x3041, 0x3097)] + [chr(c) for c in range(0x30A1, 0x30FB)]
    hangul = [chr(c) for c in range(0xAC00, 0xD7A4)]
    emoji = [chr(c) for c in range(0x1F300, 0x1F650)] + ["\u200d", "\ufe0f", "\U0001F3FB", "\U0001F3FF"]
    combining = [chr(c) for c in range(0x300, 0x370)]
    fragments = [
        lambda: rng.choice(["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Ve", "'LL", "'D", "'"]),
        lambda: "".join(rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(rng.randint(1, 12))),
        lambda: "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 9))),
        lambda: rng.choice([" ", "  ", "   ", "\t", "\n", "\r\n", "\r", " \n", "\n\n", "\u00a0", "\u3000"]),
        lambda: "".join(rng.choice("!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~") for _ in range(rng.randint(1, 4))),
        lambda: "".join(rng.choice(cjk) for _ in range(rng.randint(1, 6))),
        lambda: "".join(rng.choice(kana) for _ in range(rng.randint(1, 6))),
        lambda: "".join(rng.choice(hangul) for _ in range(rng.randint(1, 4))),
        lambda: "".join(rng.choice(emoji) for _ in range(rng.randint(1, 4))),
        lambda: rng.choice("aeiouAEIOU") + "".join(rng.choice(combining) for _ in range(rng.randint(1, 3))),
        lambda: "".join(rng.choice(by_cat[k]) for k in rng.choices("LMNPSZC", k=rng.randint(1, 4))),
        lambda: rng.choice(["ÀÉÎÕÜ", "ñç", "ß", "Ωμ", "Жё", "ا", "ह", "ก", "ﬁ", "１", "Ａ", "·", "…", "—", "“”", "‘’"]),
    ]
    out = []
    for _ in range(n_fragments):
        k = rng.randint(1, 24)
        out.append("".join(rng.choice(fragments)() for _ in range(k)))
    for _ in range(n_codepoints):
        k = rng.randint(1, 40)
        out.append("".join(rng.choice(assigned) for _ in range(k)))
    for _ in range(n_bytes):
        # "byte-ish": Latin-1 and C0/C1 controls, the characters that map to single bytes.
        k = rng.randint(1, 30)
        out.append("".join(chr(rng.randint(0, 255)) for _ in range(k)))
    return out


def long_strings(rng):
    letters = "abcdefghijklmnopqrstuvwxyz"
    return [
        "a" * 1000,
        "ab" * 400,
        "".join(rng.choice(letters) for _ in range(2000)),
        "Supercalifragilisticexpialidocious" * 20,
        "pneumonoultramicroscopicsilicovolcanoconiosis",
        "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/") for _ in range(1500)),
        "https://example.com/" + "/".join("seg%d" % i for i in range(100)),
        "9" * 300,
        "".join(chr(rng.randint(0x4E00, 0x9FA5)) for _ in range(500)),
        "😀" * 200,
        " " * 1000,
        "\n" * 300,
        "-" * 500 + "=" * 500,
        "Ωμέγα" * 100,
        "".join(rng.choice(letters + "éèêëçàâôûù") for _ in range(1200)),
        "xyz" * 333 + "!",
    ]


# ------------------------------------------------------------------------------------------------
# Synthetic tokenizers.

SYNTH_TEXTS = [
    "a [L] b", "a   [L]b", "[L]", "  [L]  ", "x[R]   y", "x [R]\n\ny", "x [LR]  y", " [LR] [LR] ", "[L][R][LR]",
    "\u3000[L]\u00a0[R]\u2003", "word", "a word b", "aword", "word_", "wordy word", "éword", "1word", "word1",
    "word-word", "(word)", "fix ﬁx ﬁne fine ﬁnest", "abc ab abcd xabcx", "<sp>x<sp>", "<sp> <sp>", "<s> </s> <s>",
    "hello-world--foo---bar", "a.b,c;d!e?f", "...leading dots", "trailing dots...", "12-34-5678",
    "one two  three   four", "  leading", "trailing  ", "mixed\tTabs\nand\r\nnewlines",
    "ＡＢＣ１２３ ﬁ ½ ² ｶ", "e\u0301 and é", "don't DON'T We'Re", "x1y22z333", "1234567890",
]


def make_synthetic(out_dir, texts):
    from tokenizers import Tokenizer, models, trainers, pre_tokenizers, decoders, normalizers, processors
    from tokenizers import Regex, AddedToken

    base = Tokenizer(models.BPE())
    base.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    base.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=800, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    base.train_from_iterator(texts, trainer)
    base_json = base.to_str()

    qwen_re = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
               r"\s*[\r\n]+|\s+(?!\S)|\s+")
    bl = lambda prefix=False: pre_tokenizers.ByteLevel(add_prefix_space=prefix, use_regex=False)
    split = pre_tokenizers.Split
    variants = {
        "gpt2": dict(pre=pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True),
                     specials=[AddedToken("<s>", special=True), AddedToken("</s>", special=True)],
                     post=processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 0)]),
                     legacy_merges=True),
        "removed": dict(pre=pre_tokenizers.Sequence([split(Regex(r"\s+"), "removed"), split("-", "isolated"), bl()])),
        "merged_prev": dict(pre=pre_tokenizers.Sequence([split(Regex(r"\p{P}"), "merged_with_previous"), bl(True)])),
        "merged_next": dict(pre=pre_tokenizers.Sequence([split(Regex(r"\p{P}"), "merged_with_next"), bl()])),
        "contiguous": dict(pre=pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=False),
                                                        split(Regex(r"[a-z]"), "contiguous"), bl()])),
        "inverted": dict(pre=pre_tokenizers.Sequence([split(Regex(r"[a-z]+"), "isolated", invert=True),
                                                      split(Regex(r"\s"), "merged_with_next", invert=True), bl()])),
        "digits": dict(norm=normalizers.NFKC(),
                       pre=pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                    split(Regex(r" ?\p{L}+"), "isolated"), bl()])),
        "added": dict(norm=normalizers.Sequence([normalizers.NFKC()]),
                      pre=pre_tokenizers.Sequence([split(Regex(qwen_re), "isolated"), bl()]),
                      specials=[AddedToken("[L]", lstrip=True, special=True),
                                AddedToken("[R]", rstrip=True, special=True),
                                AddedToken("<sp>", special=True, normalized=False)],
                      added=[AddedToken("[LR]", lstrip=True, rstrip=True, special=False),
                             AddedToken("word", single_word=True, special=False),
                             AddedToken("ﬁx", normalized=True, special=False),
                             AddedToken("ﬁne", normalized=False, special=False),
                             AddedToken("ab", special=False), AddedToken("abc", special=False)],
                      post=processors.TemplateProcessing(single="<sp> $A", special_tokens=[("<sp>", 0)])),
    }
    rows = []
    os.makedirs(os.path.join(out_dir, "synthetic"), exist_ok=True)
    for name, v in variants.items():
        tok = Tokenizer.from_str(base_json)
        if "norm" in v:
            tok.normalizer = v["norm"]
        tok.pre_tokenizer = v["pre"]
        if "specials" in v:
            tok.add_special_tokens(v["specials"])
        if "added" in v:
            tok.add_tokens(v["added"])
        if "post" in v:
            post = v["post"]
            if isinstance(post, processors.TemplateProcessing):
                # Template ids are only known once the tokens are added.
                spec = json.loads(post.__getstate__())["special_tokens"]
                pairs = [(k, tok.token_to_id(k)) for k in spec]
                single = " ".join(("$A" if p.get("Sequence") else p["SpecialToken"]["id"])
                                  for p in json.loads(post.__getstate__())["single"])
                post = processors.TemplateProcessing(single=single, special_tokens=pairs)
            tok.post_processor = post
        data = json.loads(tok.to_str())
        if v.get("legacy_merges"):
            data["model"]["merges"] = [" ".join(m) for m in data["model"]["merges"]]
            tok = Tokenizer.from_str(json.dumps(data))
        d = os.path.join(out_dir, "synthetic", name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False, separators=(",", ":"))
        for t in texts:
            ids = tok.encode(t, add_special_tokens=False).ids
            row = {"tok": name, "text": t, "ids": ids, "ids_special": tok.encode(t, add_special_tokens=True).ids}
            dec = tok.decode(ids, skip_special_tokens=False)
            if dec != t:
                row["dec"] = dec
            rows.append(row)
    with open(os.path.join(out_dir, "synthetic.jsonl"), "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return len(variants), len(rows)


# ------------------------------------------------------------------------------------------------

def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(root, "tests", "data", "tokenizer"))
    ap.add_argument("--models", default=os.path.join(root, "models", "tokenizers"))
    args = ap.parse_args()

    from tokenizers import Tokenizer
    import tokenizers
    import transformers
    from transformers import AutoTokenizer

    toks = {v: Tokenizer.from_file(os.path.join(args.models, v, "tokenizer.json")) for v in VOCABS}
    hf_auto = {v: AutoTokenizer.from_pretrained(os.path.join(args.models, v)) for v in VOCABS}

    specials = []
    for v in VOCABS:
        for t in sorted(toks[v].get_added_tokens_decoder().values(), key=lambda t: t.content):
            if ("reserved_special_token_" in t.content or "place▁holder▁no▁" in t.content) and \
                    not t.content.endswith(("_0|>", "_5|>", "_250|>", "▁0｜>", "▁17｜>", "▁799｜>")):
                continue  # Llama's 248 reserved and DeepSeek's 800 placeholder tokens: a few suffice
            specials.append(t.content)
    specials = sorted(set(specials))

    rng = random.Random(20240611)
    texts = []
    texts += MULTILINGUAL
    texts += [unicodedata.normalize("NFD", s) for s in MULTILINGUAL]
    texts += [unicodedata.normalize("NFKC", s) for s in MULTILINGUAL[:10]]
    texts += EMOJI + CODE + NUMBERS + WHITESPACE + CONTRACTIONS + FULLWIDTH + CONTROL + SPECIAL_TEXT
    texts += added_token_strings(specials)
    texts += long_strings(rng)
    # Concatenations of the hand-written strings (boundaries between scripts and kinds).
    pool = MULTILINGUAL + EMOJI + CODE + NUMBERS + WHITESPACE + CONTRACTIONS + FULLWIDTH + CONTROL
    for _ in range(150):
        texts.append(rng.choice(pool) + rng.choice(["", " ", "\n", "\t", "  "]) + rng.choice(pool))
    texts += random_strings(rng, 1100, 400, 150)

    seen = set()
    unique = []
    for t in texts:
        if t not in seen:
            seen.add(t)
            unique.append(t)
    texts = unique

    os.makedirs(args.out, exist_ok=True)
    mismatches = 0
    with open(os.path.join(args.out, "corpus.jsonl"), "w", encoding="utf-8") as f:
        for t in texts:
            row = {"text": t}
            for v in VOCABS:
                ids = toks[v].encode(t, add_special_tokens=False).ids
                row[v] = ids
                dec = toks[v].decode(ids, skip_special_tokens=False)
                if dec != t:
                    row["dec." + v] = dec
                # transformers should agree with tokenizers here; report if it does not.
                if hf_auto[v].encode(t, add_special_tokens=False) != ids:
                    mismatches += 1
                    print(f"note: transformers differs from tokenizers for {v}: {t!r}", file=sys.stderr)
            f.write(json.dumps(row, ensure_ascii=False) + "\n")

    special_texts = SPECIAL_TEXT + MULTILINGUAL[:12] + CODE[:4] + ["", " ", "a", "\n", "Hello world"] + EMOJI[:4]
    with open(os.path.join(args.out, "special.jsonl"), "w", encoding="utf-8") as f:
        for t in special_texts:
            row = {"text": t}
            for v in VOCABS:
                ids = hf_auto[v].encode(t, add_special_tokens=True)
                row[v] = ids
                row["plain." + v] = hf_auto[v].encode(t, add_special_tokens=False)
                row["skip." + v] = toks[v].decode(ids, skip_special_tokens=True)
            f.write(json.dumps(row, ensure_ascii=False) + "\n")

    synth_texts = SYNTH_TEXTS + MULTILINGUAL[:8] + CODE[:8] + CONTRACTIONS + NUMBERS[30:] + WHITESPACE + EMOJI[:3]
    n_synth, n_synth_rows = make_synthetic(args.out, synth_texts)

    print(f"{n_synth} synthetic tokenizers with {n_synth_rows} strings; "
          f"{len(texts)} corpus strings, {len(special_texts)} add_special strings "
          f"(tokenizers {tokenizers.__version__}, transformers {transformers.__version__}); "
          f"{mismatches} transformers/tokenizers differences")


if __name__ == "__main__":
    main()
