"""The task cue tables: what ``TaskRouter`` looks for in a prompt, as data.

Each task has topic words and phrases (``_topic``: weighted, matched whole, capped per
task by the router) and patterns (``_cue``: explicit asks such as "translate ... into
French", shapes of text such as code fences or equations, and negative cues for
look-alikes). Patterns are compiled here, on import, and indexed by the words and
characters they cannot match without (``_PATTERNS_BY_FEATURE``), so a prompt visits
only the few that can match. The scoring lives in ``task.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class _Cue:
    task: str
    weight: float
    signal: str
    intent: bool  # an explicit ask ("translate ...") rather than a topic word


@dataclass(frozen=True, slots=True)
class _Pattern:
    regex: re.Pattern[str]
    effects: tuple[tuple[str, float], ...]
    signal: str
    intent: bool
    raw: bool  # matched against the original text (case matters), not the lowercased one
    min_count: int
    anchored: bool  # only matches at the start of the prompt: re.match, not re.search
    # Regexes are the slow part of classifying, so each pattern names what it cannot match
    # without: one of ``needs`` (words), one of ``chars``, one of ``subs`` (substrings),
    # non-ASCII text. Patterns are indexed by those words and characters, so a prompt only
    # visits the few whose gate is open (see _prompt_features and TaskRouter.detect).
    needs: frozenset[str]
    chars: frozenset[str]
    subs: tuple[str, ...]
    non_ascii: bool
    lines: bool  # matched at the start of each line, like code

    def hit(self, text: str, lowered: str, features: set[str], gated: bool = True) -> bool:
        """Whether the pattern matches; ``gated=False`` skips the shortcuts (for tests)."""
        if gated:
            if self.needs and self.needs.isdisjoint(features):
                return False
            if self.chars and self.chars.isdisjoint(features):
                return False
            if self.subs:
                for sub in self.subs:  # a plain loop: any() with a generator costs more here
                    if sub in lowered:
                        break
                else:
                    return False
            if self.non_ascii and _NON_ASCII not in features:
                return False
        subject = text if self.raw else lowered
        if self.lines:
            hits = sum(1 for line in subject.splitlines() if self.regex.match(line))
            return hits >= self.min_count
        if self.anchored:
            return self.regex.match(subject) is not None
        if self.min_count > 1:
            return len(self.regex.findall(subject)) >= self.min_count
        return self.regex.search(subject) is not None


_WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_NON_ASCII = "<non-ascii>"  # a feature of prompts with any non-ASCII character


def _prompt_features(text: str) -> tuple[str, list[str], set[str]]:
    """The lowercased text, its words, and its features: words, characters, non-ASCII."""
    lowered = text.lower()
    words = _WORD_RE.findall(lowered)
    features = set(words)
    features.update(lowered)
    if not text.isascii():
        features.add(_NON_ASCII)
    return lowered, words, features


_TOPIC_WORDS: dict[str, list[_Cue]] = {}
_TOPIC_PHRASES: dict[str, list[_Cue]] = {}
_PATTERNS: list[_Pattern] = []


def _topic(task: str, weight: float, terms: str) -> None:
    """Topic words for ``task``; '|' separates terms, a term of several words is a phrase."""
    for term in terms.split("|"):
        words = tuple(_WORD_RE.findall(term.strip().lower()))
        cue = _Cue(task, weight, f"'{term.strip()}'", intent=False)
        table = _TOPIC_WORDS if len(words) == 1 else _TOPIC_PHRASES
        table.setdefault(" ".join(words), []).append(cue)


def _cue(
    pattern: str,
    signal: str,
    *effects: tuple[str, float],
    intent: bool = True,
    raw: bool = False,
    min_count: int = 1,
    needs: str = "",
    chars: str = "",
    subs: tuple[str, ...] = (),
    non_ascii: bool = False,
    lines: bool = False,
) -> None:
    # Raw patterns look at lines of code (MULTILINE). The others see lowercased text (no
    # IGNORECASE: it makes matching about 3x slower) and anchor ^ at the prompt's start.
    flags = re.MULTILINE if raw else 0
    anchored = pattern.startswith("\\A") or (not raw and pattern.startswith("^"))
    compiled = re.compile(pattern, flags)
    _PATTERNS.append(
        _Pattern(
            compiled,
            effects,
            signal,
            intent,
            raw,
            min_count,
            anchored,
            frozenset(needs.split()),
            frozenset(chars),
            subs,
            non_ascii,
            lines,
        )
    )


# An optional polite or indirect opening before the verb that carries the request.
_LEAD = (
    r"^\W*(?:(?:hi|hey|hello|ok(?:ay)?|so|please)\W+)*"
    r"(?:(?:can|could|would|will) you\s+(?:please\s+)?|please\s+|i (?:need|want) you to\s+"
    r"|help me\s+|i'?d like you to\s+|now\s+)?"
)
_NATURAL_LANGUAGES = (
    r"english|french|spanish|german|italian|portuguese|japanese|chinese|mandarin|cantonese"
    r"|korean|russian|arabic|hindi|bengali|urdu|dutch|swedish|norwegian|danish|finnish|polish"
    r"|czech|turkish|greek|hebrew|latin|thai|vietnamese|indonesian|malay|swahili|ukrainian"
    r"|romanian|hungarian|persian|farsi|tagalog|catalan|welsh|irish|esperanto"
)
_PROGRAMMING_LANGUAGES = (
    r"python|javascript|typescript|java|kotlin|swift|rust|go|golang|ruby|php|perl|scala"
    r"|haskell|c\+\+|c#|c|sql|bash|powershell|lua|dart|elixir|julia|matlab|r"
)

# coding ---------------------------------------------------------------------------
_topic(
    "coding",
    2.0,
    "python|javascript|typescript|java|golang|rust|ruby|php|kotlin|sql|regex|regexp|bash|git"
    "|docker|dockerfile|kubernetes|api|apis|endpoint|json|yaml|html|css|react|django|flask"
    "|fastapi|express|node|nodejs|npm|pip|pandas|numpy|compiler|compile|runtime|segfault"
    "|traceback|stacktrace|refactor|refactoring|debugger|unit tests|pytest|async|await|gil"
    "|multiprocessing|threading|frontend|backend|cors|localhost|gunicorn|idiomatic|codebase"
    "|repo|repository|pointer|pointers|recursion|lambda|hashmap|linux|macos|sdk|webpack",
)
_topic(
    "coding",
    1.0,
    "code|coding|function|functions|method|class|variable|loop|array|arrays|string|strings"
    "|integer|boolean|script|query|queries|database|server|bug|bugs|debug|debugging|program"
    "|programming|developer|syntax|algorithm|compiles|exception|crash|crashes|cache|thread"
    "|threads|processes|binary search|loops|infinite loop|command line|terminal|commit"
    "|benchmark|component|promise|promises|re renders|rows|dataframe|unit|tests|library"
    "|install|parse|parser|distributed|consistency|consensus|raft|paxos|microservices"
    "|scalability|latency|throughput|load balancer|sharding|replication|system design"
    "|key value store",
)
_cue(r"```", "code fence", ("coding", 2.5), intent=False, raw=True, chars="`")
_cue(
    r"\s*(?:def |class \w+|import \w|from [\w.]+ import|function \w|const |let |var |fn \w"
    r"|pub fn|public |private |#include|package \w|SELECT |INSERT |CREATE TABLE|return\b)",
    "code line",
    ("coding", 2.0),
    intent=False,
    raw=True,
    lines=True,
    needs="def class import from function const let var fn pub public private include"
    " package select insert create return",
)
# A function signature followed by its docstring or comment is a stub to complete: code,
# however many numbers its description mentions (round one's "math" errors on HumanEval).
_cue(
    r"^[ \t]*(?:async\s+)?(?:def|function|func|fn)\s+\w+\s*\([^)]*\)[^\n]*\n[ \t]*"
    r"(?:\"\"\"|'''|/\*\*|//|#)",
    "function stub",
    ("coding", 5.0),
    raw=True,
    needs="def function func fn",
)
_cue(
    r"\s*(?:while|for|if|elif|else|try|except|with)\b.*:\s*$",
    "code block",
    ("coding", 2.0),
    intent=False,
    raw=True,
    lines=True,
    needs="while for if elif else try except with",
)
_cue(
    r"\s*[a-z_][\w.\[\]]*(?:\s*,\s*[a-z_]\w*)*\s*[-+*/]?=\s*\S",
    "assignment",
    ("coding", 2.0),
    intent=False,
    raw=True,
    lines=True,
    chars="=",
)
_cue(
    r".*[;{}]\s*$",
    "braces/semicolons",
    ("coding", 1.5),
    intent=False,
    raw=True,
    min_count=2,
    lines=True,
    chars=";{}",
)
_cue(r"\.\w+\([^()\n]*\)", "method call", ("coding", 1.5), intent=False, raw=True, chars="(")
_cue(
    r"Traceback \(most recent call last\)|\b[A-Z]\w*(?:Error|Exception)\b|Segmentation fault"
    r"|panicked at|NullPointer|undefined is not|stack trace",
    "error trace",
    ("coding", 3.0),
    intent=False,
    raw=True,
    subs=(
        "error",
        "exception",
        "traceback",
        "segmentation",
        "panicked",
        "nullpointer",
        "undefined is not",
        "stack trace",
    ),
)
_cue(
    r"\w\.(?:py|js|ts|tsx|jsx|java|cpp|cc|hpp|rs|go|rb|php|sh|ya?ml|toml|ipynb|cs|kt"
    r"|swift|log)\b",
    "file name",
    ("coding", 2.0),
    intent=False,
    needs="py js ts tsx jsx java cpp cc hpp rs go rb php sh yml yaml toml ipynb cs kt swift log",
)
_cue(
    r"==|!=|=>|\+=|&&|\|\||::|->",
    "code operators",
    ("coding", 1.5),
    intent=False,
    raw=True,
    chars="=&|:>",
    subs=("==", "!=", "=>", "+=", "&&", "||", "::", "->"),
)
_cue(
    r"\bO\([^)]{1,12}\)", "big-O", ("coding", 1.5), intent=False, raw=True, chars="(", subs=("o(",)
)
_cue(r"(?:^|\s)--?[a-z][\w-]+", "CLI flags", ("coding", 1.5), intent=False, min_count=2, chars="-")
_cue(r"\bc\+\+|\bc#|\bf#", "'C++/C#'", ("coding", 2.0), intent=False, chars="+#")
_cue(
    _LEAD + r"(?:write|create|implement|build|generate|code|give me|show me|make)\s+(?:me\s+)?"
    r"(?:an?\s+|the\s+|some\s+)?(?:[\w+#-]+\s+){0,3}?(?:function|program|class|method|query"
    r"|regexp?|dockerfile|unit tests?|api|endpoint|algorithm|command-line tool|cli|component"
    r"|module|decorator|snippet|code|script (?:to|that|which)|bash|makefile|sql)\b",
    "write <code>",
    ("coding", 4.0),
    needs="write create implement build generate code give show make",
)
_cue(
    _LEAD + r"(?:refactor|debug|optimi[sz]e|implement|compile|deploy|lint|review my (?:\w+ )?"
    r"code|convert this (?:\w+ )?code)\b",
    "code verb",
    ("coding", 4.0),
    needs="refactor debug optimize optimise implement compile deploy lint review convert",
)
_cue(
    r"\b(?:translate|convert|port|rewrite)\b.{0,80}?\b(?:in)?to\s+(?:idiomatic\s+|modern\s+)?"
    r"(?:" + _PROGRAMMING_LANGUAGES + r")\b(?!\s+(?:speakers?|audience))",
    "into a programming language",
    ("coding", 5.0),
    ("translation", -5.0),
    needs="translate convert port rewrite",
)
_cue(
    r"\bwhat does this (?:\w+[ -]){0,2}?(?:code|function|script|regex|query|snippet|one-liner"
    r"|command|program|method)\b",
    "explain this code",
    ("coding", 2.0),
    needs="does",
)
# Non-code things people "fix", "debug" or find "bugs" in.
_cue(
    r"\b(?:fix|fixing|repair|debug|debugging|troubleshoot)\w*\s+(?:\w+\s+){0,3}?(?:my|the|a|our"
    r"|this|what'?s)?\s*(?:bike|bicycle|tyre|tire|car|relationship|marriage|sleep|schedule"
    r"|life|posture|diet|roof|sink|toilet|faucet|tap|door|fence|hair|going wrong between)",
    "everyday 'fix'",
    ("coding", -4.0),
    ("conversation", 1.5),
    needs="fix fixes fixed fixing repair repairs repaired repairing debug debugs debugged"
    " debugging troubleshoot troubleshooting",
)
_cue(
    r"\bbugs?\b.{0,40}\b(?:kitchen|garden|house|bed|room|cockroach|insect|ants?|spider|beetle)",
    "insect 'bug'",
    ("coding", -4.0),
    ("conversation", 1.5),
    needs="bug bugs",
)
# Python the snake.
_cue(
    r"\b(?:ball|pet|royal|burmese|reticulated|carpet|rock)\s+pythons?\b|\bpythons?\b.{0,60}?"
    r"\b(?:venomous|prey|eat|eating|snake|reptile|tank|terrarium|shed|shedding|bite|escap\w*)\b",
    "python the snake",
    ("coding", -5.0),
    ("stem", 2.5),
    needs="python pythons",
)

# math -----------------------------------------------------------------------------
_topic(
    "math",
    2.0,
    "equation|equations|derivative|derivatives|differentiate|integral|integrals|calculus|algebra"
    "|matrix|matrices|eigenvalues|eigenvectors|eigenvalue|determinant|polynomial|quadratic"
    "|logarithm|probability|combinatorics|permutations|factorial|prime|primes|divisible"
    "|fraction|fractions|least common multiple|greatest common divisor|lcm|gcd|theorem|lemma"
    "|induction|irrational|converges|convergent|geometric series|trigonometry|hypotenuse"
    "|perimeter|square root|squared|cubed|compounded|compound interest|simplify|integer solutions"
    "|related rates|standard deviation|variance|median|percent|percentage|dice|arithmetic"
    "|lowest terms",
)
_topic(
    "math",
    1.0,
    "how many|how much|how fast|how far|twice|half|third|quarter|as many|total|together"
    "|altogether|remaining|sum|product|average|speed|per hour|miles|km|area|volume|rectangle"
    "|triangle|circle|radius|dimensions|prove|proof|solve|calculate|compute|evaluate|formula"
    "|interest|invest|chance|odds|ways|arrange|numbers|real numbers|sequence|series|value",
)
_cue(
    r"\d\s*[-+*/^×÷]\s*\(?\d|\b\d*[a-z]\s*[-+*/^=]\s*\d|[a-z]\^\d|\d\s*=\s*\d|\b[xyzn]\s*=",
    "equation",
    ("math", 2.5),
    intent=False,
    chars="0123456789=",
)
_cue(r"[∫∑√π≤≥≠∞∂±×÷²³]", "math symbols", ("math", 3.0), intent=False, raw=True, non_ascii=True)
_cue(
    r"\b(?:sin|cos|tan|log|ln|exp|sqrt)\s*\(",
    "math function",
    ("math", 2.0),
    intent=False,
    chars="(",
    needs="sin cos tan log ln exp sqrt",
)
_cue(r"\b\d+(?:\.\d+)?\s*%", "percentage", ("math", 1.0), intent=False, chars="%")
_cue(
    r"\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty"
    r"|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred|dozen)\b",
    "number words",
    ("math", 1.0),
    intent=False,
    min_count=2,
    needs="one two three four five six seven eight nine ten eleven twelve fifteen twenty"
    " thirty forty fifty sixty seventy eighty ninety hundred dozen",
)
_cue(
    _LEAD + r"(?:solve|calculate|compute|evaluate the|simplify|differentiate|integrate|factori[sz]e"
    r"|prove|derive|find (?:the |all )?(?:value|derivative|integral|area|sum|probability|roots?"
    r"|limit|integer|solutions?|eigen\w+|dimensions|least|greatest)|convert \d|show that)\b",
    "math verb",
    ("math", 4.0),
    needs="solve calculate compute evaluate simplify differentiate integrate factorise factorize"
    " prove derive find convert show",
)
_cue(
    _LEAD + r"what(?:'s| is)\s+\d[\d\s.,]*(?:[-+*/x×÷^]|times|plus|minus|divided|percent|%)",
    "arithmetic question",
    ("math", 4.0),
    needs="what's what",
)

# reasoning ------------------------------------------------------------------------
_topic(
    "reasoning",
    2.0,
    "riddle|puzzle|logic|logical|logically|deduce|deduced|deduction|deductive|inference|infer"
    "|premise|premises|conclusion|conclude|syllogism|valid|validity|fallacy|flaw|knights"
    "|knaves|liar|truth teller|lateral thinking|brain teaser|trick question|reasoning"
    "|causation|correlation|must be true|what comes next|next in the sequence|overtake"
    "|overtaken|decision criteria|under uncertainty|clues|possibilities|labelled|weighs more",
)
_topic(
    "reasoning",
    1.0,
    "reasons|argument|assume|suppose|explain why|what happened|torch|ropes|boat|cross|river"
    "|wolf|goat|cabbage|boxes|coins|nickel|widgets|machines|position|race|options|risks"
    "|evidence|recommendation|brother|brothers|sister|sisters|detective|footprints",
)
_cue(
    r"\b(?:all|no|some)\s+\w+s\s+are\b",
    "syllogism form",
    ("reasoning", 3.0),
    intent=False,
    needs="all no some",
)
_cue(
    r"\bwhat could (?:be )?(?:the )?(?:reasons?|explain)|\bwhat happened\?"
    r"|\bhow (?:can|could|would) (?:you|i|we|he|she) (?:measure|tell|know|determine|find out"
    r"|relabel|be sure)\b|\bhow (?:is|was) (?:that|this) possible\b|\bwhy might\b"
    r"|\bwho is (?:what|lying|telling the truth)\b",
    "puzzle question",
    ("reasoning", 3.0),
    needs="what how why who",
)
_cue(
    r"\b\w+er than\b",
    "comparison chain",
    ("reasoning", 2.0),
    intent=False,
    min_count=2,
    needs="than",
)
_cue(
    r"\b(?:step by step|show (?:your|how you)|reason through|think through|explain your reasoning"
    r"|how you deduced|what can we conclude|which (?:of these|explanation) )",
    "reasoning ask",
    ("reasoning", 2.5),
    needs="step show reason think explain how what which",
)
_cue(
    r"\b(?:is|was) (?:the following|this) (?:reasoning|argument) valid|evaluate this argument"
    r"|identify the flaw|what'?s wrong with (?:it|this argument)",
    "argument check",
    ("reasoning", 4.0),
    needs="valid argument flaw wrong",
)

# extraction -------------------------------------------------------------------------
_ITEMS = (
    r"e-?mails?|email addresses|names?|dates?|times?|phone numbers?|numbers|urls?|links|addresses"
    r"|entities|hashtags|@?mentions|prices|amounts|companies|people|persons|organi[sz]ations"
    r"|locations|places|ingredients|skills|keywords|error codes|codes|timestamps|action items?"
    r"|obligations|characters|fields|values|key-value pairs|figures|products?|authors?"
    r"|deadlines?|owners?|quantities|totals?|ids?"
)
_topic(
    "extraction",
    2.0,
    "extract|extraction|named entities|key value|key value pairs|structured data|schema|as json"
    "|in json|as csv|into a table|fill in|action items|invoice|mentioned|citation|doi",
)
_cue(
    r"\bextract\w*\b",
    "extract",
    ("extraction", 4.0),
    needs="extract extracts extracted extracting extraction",
)
_cue(
    r"\b(?:pull|list|find|get|identify|grab|collect|return|highlight|give me)\s+(?:out\s+)?"
    r"(?:all|every|each|any)?\s*(?:of\s+)?(?:the\s+)?(?:[\w-]+\s+){0,2}?(?:" + _ITEMS + r")\b",
    "pull out <items>",
    ("extraction", 3.5),
    needs="pull list find get identify grab collect return highlight give",
)
_cue(
    r"\b(?:which|what)\s+(?:\w+\s+){0,4}?(?:are|were|is)\s+mentioned\b"
    r"|\bmentioned in (?:this|the)\b",
    "what is mentioned",
    ("extraction", 3.5),
    needs="mentioned",
)
_cue(
    r"\b(?:as|into|in|to)\s+(?:a\s+)?(?:json|csv|table|spreadsheet|schema|key-value)\b|\bfill in"
    r" this schema\b|\bparse this (?:address|date|name|line|record)",
    "structured output",
    ("extraction", 2.5),
    needs="json csv table spreadsheet schema key parse",
)
_cue(r"[\w.+-]+@[\w-]+\.[a-z]{2,}", "email address", ("extraction", 1.5), intent=False, chars="@")
_cue(
    r"\bfrom (?:this|these|the following|the|my)\s+(?:\w+\s+)?(?:text|paragraph|email|invoice|log"
    r"|list|review|snippet|article|resume|document|report|excerpt|citation|tweets?|scene|clause"
    r"|notes|posting|line|tickets?|recipe|invitation|sentence)\b",
    "from the given text",
    ("extraction", 2.0),
    needs="from",
)

# writing --------------------------------------------------------------------------
_KINDS = (
    r"poem|poems|haiku|sonnet|limerick|story|stories|tale|fable|essay|letter|cover letter|e-?mail"
    r"|message|note|reminder|blog post|post|article|speech|toast|eulogy|song|lyrics|verses?"
    r"|slogans?|taglines?|headlines?|bio|description|press release|script for|screenplay|chapter"
    r"|novel|introduction|intro|conclusion|paragraph|op-ed|newsletter|invitation|caption|jingle"
    r"|proposal|announcement|tweet|toast|ode|monologue|dialogue|wedding|obituary|ad|advert"
)
_topic(
    "writing",
    1.5,
    "poem|haiku|sonnet|limerick|story|essay|lyrics|slogan|slogans|tagline|toast|eulogy|blog"
    "|op ed|headline|tone|grammar|spelling|proofread|persuasive|catchy|rhyme|iambic|fiction"
    "|cliffhanger|cover letter|press release|linkedin|bedtime story|punchier|flowing|chorus"
    "|verses|draft|polite|friendly|professional|wording|reads better|flows better",
)
_cue(
    _LEAD + r"(?:write|draft|compose|pen|craft|create|give me|come up with)\s+(?:me\s+)?(?:an?\s+"
    r"|the\s+|some\s+|\d+\s+|one\s+|two\s+|three\s+|five\s+|ten\s+)?(?:[\w'-]+\s+){0,3}?"
    r"(?:" + _KINDS + r")\b",
    "write <text>",
    ("writing", 5.0),
    needs="write draft compose pen craft create give come",
)
_cue(
    _LEAD + r"(?:rewrite|rephrase|reword|proofread|edit|polish|paraphrase"
    r"|make this (?:[\w-]+ ){0,3}?(?:sound|more|less|shorter|punchier|clearer|formal|friendlier)"
    r"|turn (?:this|these)\b.{0,60}\binto (?:an?\s+)?(?:\w+\s+){0,2}"
    r"(?:paragraph|story|poem|email|letter|essay|post|speech))",
    "edit text",
    ("writing", 5.0),
    needs="rewrite rephrase reword proofread edit polish paraphrase make turn",
)

# roleplay -------------------------------------------------------------------------
_topic(
    "roleplay",
    1.5,
    "roleplay|role play|in character|character|pretend|persona|dungeon master|game master"
    "|adventure|tavern|barkeep|captain|knight|pirate|stay in character|in his voice"
    "|in her voice|interrogating|negotiation",
)
_cue(
    r"\b(?:pretend|imagine)\s+(?:that\s+)?(?:you(?:'re| are)|to be)\b|\bact(?:ing)? as (?:an?|my"
    r"|the|if)\b|\brole-?play|\bplay (?:the role|a|an) \w+|\bstay in (?:character|that role)"
    r"|\bin (?:his|her|their) voice\b|\brespond as\b|\bas if you were\b|\bfrom now on,? you(?:'re"
    r"| are)\b|\blet'?s (?:play|roleplay|pretend)\b|\bsimulate an? (?:conversation|negotiation"
    r"|interview|debate|dialogue)\b|\b(?:dungeon|game) master\b|\bi want you to act\b",
    "role request",
    ("roleplay", 5.0),
    needs="pretend imagine act acting roleplay role play stay voice respond if now let's"
    " simulate master",
)
_cue(
    r"^\W*(?:you(?:'re| are)|be)\s+(?:now\s+)?(?:an?|my|the|[a-z]+ [a-z]+\.)\s*",
    "you are <someone>",
    ("roleplay", 3.0),
    needs="you you're be",
)
_cue(
    r"\bbe (?:my|the) (?:[\w-]+\s+){0,2}(?:partner|tutor|master|coach|opponent|guide|narrator"
    r"|interviewer|grandmother|friend)\b",
    "be my <role>",
    ("roleplay", 4.0),
    needs="be",
)
_cue(r"\A\s*\*[^*\n]{3,80}\*", "stage direction", ("roleplay", 4.0), raw=True, chars="*")

# stem -----------------------------------------------------------------------------
_topic(
    "stem",
    2.0,
    "physics|chemistry|biology|photosynthesis|chlorophyll|cell|cells|molecule|molecules|atom"
    "|atoms|electron|electrons|proton|neutron|quantum|entanglement|gravity|gravitational"
    "|relativity|thermodynamics|entropy|black hole|black holes|event horizon|galaxy|planet"
    "|planets|orbit|climate|greenhouse|greenhouse effect|carbon|co2|oxygen|dna|rna|mrna|gene"
    "|genes|genetic|crispr|protein|proteins|enzyme|enzymes|virus|viruses|bacteria|bacterium"
    "|antibiotic|antibiotics|vaccine|vaccines|immune|immune system|neuron|neurons|synapse|blood"
    "|evolution|species|reptile|snake|venomous|prey|fission|fusion|nuclear|battery|batteries"
    "|lithium ion|voltage|circuit|transistor|semiconductor|magnetic|wavelength|photon|lift"
    "|aerodynamics|wings|tectonics|plate tectonics|earthquakes|volcanoes|vacuum|density"
    "|chemical|molecular|scattering|noise cancelling|sound waves|frequency|engineering"
    "|suspension bridge|arch bridge|loads|seasons|sky|ice|physiology|astronomy|geology|ecology",
)
_topic(
    "stem",
    1.0,
    "energy|light|water|earth|sun|heat|temperature|force|mass|science|scientific|scientists"
    "|experiment|medicine|disease|brain|body|float|fall|heavier|lighter|degrade|charging"
    "|headphones|airplane|resistant|resistance|immune|mammal|mammals",
)
# A number with an SI unit (mL, mol, atm, µF, eV...) is a science problem, not a word problem.
# One-letter units (0.108 M, 2.5 V) only after a decimal and a space: "1M users", "$2M",
# "10K requests" and "a 4K monitor" are not science.
_cue(
    r"\d\s?(?:mL|mol|atm|k?Pa|k?J|eV|[kM]?Hz|mV|[µμn]F|Ω|nm|m/s|m/s\^?2|kW|mA|°C)(?!\w)"
    r"|(?<![$\w.])\d+\.\d+ (?:M|K|T|A|W|N|V|J)\b",
    "SI units",
    ("stem", 2.5),
    intent=False,
    raw=True,
)
_cue(
    r"^\W*(?:how|why) (?:do|does|did|is|are|can|do we)\b|^\W*what (?:causes|is the difference"
    r" between|happens)\b",
    "how/why question",
    ("stem", 0.5),
    ("humanities", 0.5),
    intent=False,
    needs="how why what",
)

# humanities ---------------------------------------------------------------------
_topic(
    "humanities",
    2.0,
    "history|historical|historians|war|wars|world war|empire|revolution|dynasty|century"
    "|centuries|renaissance|reformation|colonial|colonialism|treaty|fascism|communism|marx"
    "|marxism|capitalism|democracy|democracies|constitution|constitutional|monarchy|politics"
    "|political|philosophy|philosophies|philosopher|philosophers|philosophical|ethics|ethical"
    "|morality|moral|utilitarianism|virtue ethics|existentialism|kant|hobbes|locke|plato"
    "|aristotle|nietzsche|literature|literary|themes|symbolism|symbolise|symbolize|narration"
    "|narrator|shakespeare|painting|painted|painter|impressionism|baroque|sculpture|religion"
    "|religions|religious|islam|christianity|buddhism|hinduism|judaism|sunni|shia|theology"
    "|sociology|anthropology|linguistics|civil rights|magna carta|berlin wall|printing press"
    "|alienation|enlightenment|feudal|silk road|meiji|restoration|cleopatra|sistine chapel"
    "|social contract|categorical imperative|hypothesis|great depression|cold war|civil war"
    "|industrial revolution|holocaust|slavery|abolition|crusades|ottoman|byzantine|aztec"
    "|pharaoh|colonization|colonisation|independence|historian|mythology|epic poem",
)
_topic(
    "humanities",
    1.0,
    "art|culture|cultural|society|movement|women|ancient|medieval|roman|rome|greek|egypt"
    "|europe|european|american|china|japan|causes|consequences|significance|influence"
    "|influenced|remembered|ideas|reader|sympathy|scenes|novel|gatsby|mockingbird",
)
_cue(
    r"^\W*(?:what were|why did|who was|who were|who painted|who wrote|when did|what role did"
    r"|how did)\b",
    "history question",
    ("humanities", 1.5),
    needs="what why who when how",
)
_cue(r"\bsignificance of\b", "significance of", ("humanities", 1.5), needs="significance")
_cue(
    _LEAD + r"(?:analy[sz]e|discuss|interpret|compare the)\b",
    "analysis ask",
    ("humanities", 1.0),
    needs="analyse analyze discuss interpret compare",
)

# translation --------------------------------------------------------------------
_topic("translation", 1.5, _NATURAL_LANGUAGES)
_topic("translation", 1.0, "phrase|word for|pronounced|pronounce|literally|localise|localize")
_cue(
    r"\btranslat(?:e|ed|es|ing|ion)\b",
    "translate",
    ("translation", 4.0),
    needs="translate translated translates translating translation",
)
_cue(
    r"\b(?:into|to|in)\s+(?:\w+\s+)?(?:" + _NATURAL_LANGUAGES + r")\b",
    "into <language>",
    ("translation", 3.0),
    needs=_NATURAL_LANGUAGES.replace("|", " "),
)
_cue(
    r"\bhow (?:do|would|can|should) (?:you|i|we) say\b|\b(?:word|phrase) for\b|\bmean in "
    r"(?:" + _NATURAL_LANGUAGES + r")\b|\blocali[sz]e\b|\brender (?:this|it)\b|\bput (?:this|it)"
    r" into\b",
    "say it in",
    ("translation", 3.5),
    needs="say word phrase mean localise localize render put",
)
_cue(
    r"[\u3040-\u30ff\u4e00-\u9fff\uac00-\ud7af\u0400-\u04ff\u0600-\u06ff\u0e00-\u0e7f\u0590-\u05ff]",
    "non-Latin script",
    ("translation", 2.0),
    intent=False,
    raw=True,
    non_ascii=True,
)

# summarization --------------------------------------------------------------------
_topic(
    "summarization",
    2.0,
    "summary|summaries|gist|overview|abstract|key points|main points|key takeaways|recap"
    "|in a nutshell|executive summary|study sheet|tl dr|tldr|condense|boil",
)
_cue(
    r"\bsummar(?:y|ies|i[sz]e|i[sz]ed|i[sz]ing)\b",
    "summarize",
    ("summarization", 4.0),
    needs="summary summaries summarize summarise summarized summarised summarizing summarising",
)
_cue(
    r"\btl;?dr\b|\bcondense\b|\bboil (?:this|it) down\b|\bsum (?:this |it )?up\b|\brecap\b"
    r"|\bgist\b|\b(?:brief )?overview of\b|\bkey (?:points|takeaways)\b|\bmain (?:points|ideas"
    r"|arguments)\b|\bshorten\b|\bexecutive summary\b|\bwhat is this (?:\w+ )?(?:story|article"
    r"|paragraph|text|document|passage|email|thread) about\b|\babstract of\b",
    "condense",
    ("summarization", 3.5),
    needs="tl tldr condense boil sum recap gist overview key main shorten executive about",
)
_cue(
    r"\b(?:in|to|under|into)\s+(?:one|two|three|four|five|a few|a single|\d+)\s+(?:sentences?"
    r"|lines?|words|bullet points|paragraphs?)\b|\bone-line\b|\bone paragraph\b",
    "length limit",
    ("summarization", 1.5),
    needs="sentence sentences line lines words points paragraph paragraphs one",
)
_cue(
    _LEAD + r"(?:summari[sz]e|condense|recap|tl;?dr|boil|shorten|sum up|give me the gist)",
    "leads with summarize",
    ("summarization", 2.0),
    needs="summarize summarise condense recap tl tldr boil shorten sum give",
)

# conversation ---------------------------------------------------------------------
_topic(
    "conversation",
    1.0,
    "dinner|cook|cooking|puppy|dog|kitten|roommate|friend|friends|boyfriend|girlfriend"
    "|relationship|trip|travel|vacation|weekend|movie|movies|book|flight|interview|nervous"
    "|sleep|exercise|running|gym|minivan|suv|kitchen|cockroach|mondays|bored|plans|gap year"
    "|university|tips|advice|favourite|favorite|joke|family|tired|lonely|social life|introvert"
    "|tyre|tire|bike|lid|budget|relaxing|names|recommend",
)
_cue(
    r"^\W*(?:hi|hello|hey|hiya|yo|good (?:morning|afternoon|evening)|greetings|howdy)\b",
    "greeting",
    ("conversation", 3.0),
    needs="hi hello hey hiya yo good greetings howdy",
)
_cue(
    r"\b(?:thanks|thank you|cheers)\b(?! for your patience)",
    "thanks",
    ("conversation", 2.0),
    needs="thanks thank cheers",
)
_cue(
    r"\bhow are you\b|\bwhat'?s up\b|\bwhat can you (?:do|help)\b|\btell me (?:a joke|about"
    r" yourself)\b|\bdo you (?:ever|like|think|have)\b|\bi'?m (?:so |really )?(?:bored|tired"
    r"|nervous|sad|stressed|lonely|torn|moving|excited)\b|\bany (?:tips|advice|ideas"
    r"|recommendations)\b|\bshould i\b|\bwhat should i\b|\bhelp me (?:plan|decide|choose)\b"
    r"|\bugh\b|\bwhich is better\b|\bcan you recommend\b|\bwhat'?s (?:a|the) (?:good|best) way\b",
    "chat",
    ("conversation", 2.0),
    needs="how what's whats what can tell do i'm im any should which ugh help",
)
# A one-line question about the world, not about you or me, asks for knowledge: small talk
# is about the people talking ("how are you", "should I"), a factual question is not.
_cue(
    r"^\W*(?:what|who|whom|whose|which|where|when|why|how|is|are|was|were|do|does|did|can"
    r"|could|will|would|has|have)\b(?![^\n]*\b(?:you|your|yours|yourself|i|i'm|i've|i'd|me|my"
    r"|mine|we|us|our)\b)[^\n]*\?\s*\Z",
    "impersonal question",
    ("conversation", -1.5),
    intent=False,
    needs="what who whom whose which where when why how is are was were do does did can could"
    " will would has have what's who's where's when's why's how's can't could've would've",
)
_cue(
    r"\b(?:my|our|i)\b",
    "personal",
    ("conversation", 0.5),
    intent=False,
    needs="my our i i'm i've i'd i'll",
)


_PHRASE_STARTS = frozenset(phrase.split()[0] for phrase in _TOPIC_PHRASES)
_PATTERNS_BY_FEATURE: dict[str, list[int]] = {}
_UNGATED: list[int] = []
for _index, _pattern in enumerate(_PATTERNS):
    _keys = _pattern.needs or _pattern.chars or ({_NON_ASCII} if _pattern.non_ascii else set())
    for _key in _keys:
        _PATTERNS_BY_FEATURE.setdefault(_key, []).append(_index)
    if not _keys:
        _UNGATED.append(_index)
