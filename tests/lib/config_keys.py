"""The configuration keys as the reference (docs/configuration.md) names them, and the keys
named in other text (help, log and error messages, documentation), so the suites can keep
them in step."""
import pathlib
import re

REPO = pathlib.Path(__file__).resolve().parents[2]
REFERENCE = REPO / "docs" / "configuration.md"
SECTIONS = ("workers", "listen", "limits", "timeouts", "log", "upstreams", "sites", "tls",
            "http2")
# Sub-tables documented under their own heading, by the path their keys live under.
NESTED = {"version": "sites.version", "mirror": "sites.mirror"}
FILE_SUFFIXES = ("c", "h", "md", "py", "yaml")

# A dotted key as text names it: "timeouts.drain", "tls.acme.storage", "sites[0].version.default",
# "upstreams.postfacto-4.1.0.keepalive" or, in C format strings, "upstreams.%s.servers".
KEY_IN_TEXT = re.compile(
    r"(?<![\w.%%])(?:%s)(?:\[[^\]]*\])?(?:\.(?:%%s|[A-Za-z_][\w-]*|\d[\w.-]*?)(?:\[[^\]]*\])?)+"
    % "|".join(SECTIONS))


def reference_keys():
    """Every key in the reference's tables, as a dotted path without list indexes or pool names:
    "timeouts.drain", "tls.acme.storage", "sites.version.default", "upstreams.keepalive". A
    list of `{a, b}` mappings adds its members ("tls.certificates.cert")."""
    keys, section = set(), None
    for line in REFERENCE.read_text().splitlines():
        m = re.match(r"#{2,3} (.+)$", line)
        if m:
            head = m.group(1).strip()
            if head == "Top level":
                section = ""
            elif re.fullmatch(r"`[a-z0-9_.]+`", head):
                section = NESTED.get(head.strip("`"), head.strip("`"))
            else:
                section = None
            continue
        m = re.match(r"\| `([a-z_]+)` \| ([^|]*)\|", line)
        if not m or section is None:
            continue
        key = f"{section}.{m.group(1)}" if section else m.group(1)
        keys.add(key)
        members = re.search(r"`\{([a-z_, ]+)\}`", m.group(2))
        if members:
            keys.update(f"{key}.{k.strip()}" for k in members.group(1).split(","))
    return keys


def normalize(token):
    """The reference's form of a key named in text: indexes and the pool name dropped
    ("upstreams.NAME" is the pool, "upstreams.NAME.KEY" one of its keys)."""
    token = re.sub(r"\[[^\]]*\]", "", token)
    pool = re.fullmatch(r"upstreams\.(.+?)(\.[a-z_]+)?", token)  # pool names may hold dots
    return "upstreams" + (pool.group(2) or "") if pool else token


def keys_in_text(text):
    """The dotted keys named in text, as written, leaving out file names (tls.h, log.c) and
    generic "section.%s" placeholders."""
    out = []
    for token in KEY_IN_TEXT.findall(text):
        last = token.rsplit(".", 1)[1]
        if last in FILE_SUFFIXES or last == "%s":
            continue
        out.append(token)
    return out


def c_string_literals(path):
    """The string literals of a C file, #include lines left out."""
    text = "\n".join(line for line in pathlib.Path(path).read_text().splitlines()
                     if not line.lstrip().startswith("#include"))
    return [m.group(1) for m in re.finditer(r'"((?:[^"\\\n]|\\.)*)"', text)]
