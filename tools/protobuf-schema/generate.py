#!/usr/bin/env python3
"""Generate src/api/protobuf/schema.rs, the protobuf -> JSON schema table of skiff.

Inputs (all read-only):
  * k8s-pb 0.9.0 (prost-generated Rust): protobuf tags, wire types, proto field
    names and message types of every Kubernetes message.
  * k8s-openapi 0.26.1 (src/v1_32, then v1_33, v1_34, v1_31, v1_30 as fallbacks
    for fields/types that 1.32 lacks): JSON field names (from the Deserialize
    impls: `"podCIDR" => Field::Key_pod_cidr`), and apiVersion/kind of resources.
  * go-fields.tsv (next to this script): per type, the protobuf tags of
    non-pointer Go fields tagged `omitempty` (go-to-protobuf always writes
    them; Go's encoding/json drops their zero value, so the decoder does too)
    and of `json:",inline"` embedded structs.  It is (re)written from the Go
    types of k8s.io/api, k8s.io/apimachinery and k8s.io/apiextensions-apiserver
    (release-1.32) when --go-src DIR is given (DIR holding api/, apimachinery/
    and apiextensions-apiserver/ checkouts; JSON names are then cross-checked
    against k8s-openapi too); otherwise the committed file is used.

The join is by package path + type name (case-insensitive) and by field name
normalised (lowercase, without `_`, `-`, `$`, `r#`).  Fields that cannot be
joined are reported on stderr; types without a JSON counterpart are skipped.

Usage: python3 tools/protobuf-schema/generate.py [--registry DIR] [--go-src DIR]
           [--out src/api/protobuf/schema.rs]
Python 3 standard library only.
"""

import argparse
import glob
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
GO_FIELDS = os.path.join(HERE, "go-fields.tsv")

OPENAPI_VERSIONS = ["v1_32", "v1_33", "v1_34", "v1_31", "v1_30"]

# Messages whose JSON form is not an object with the message's fields.
# Keyed by (package path, lowercase type name) -> Rust `Special` variant.
SPECIAL = {
    ("apimachinery/pkg/apis/meta/v1", "time"): "Time",
    ("apimachinery/pkg/apis/meta/v1", "microtime"): "MicroTime",
    ("apimachinery/pkg/apis/meta/v1", "duration"): "Duration",
    ("apimachinery/pkg/apis/meta/v1", "fieldsv1"): "RawJson",
    ("apimachinery/pkg/runtime", "rawextension"): "RawExtension",
    ("apimachinery/pkg/api/resource", "quantity"): "Quantity",
    ("apimachinery/pkg/api/resource", "quantityvalue"): "Quantity",
    ("apimachinery/pkg/util/intstr", "intorstring"): "IntOrString",
}
for _v in ("v1", "v1beta1"):
    _p = "apiextensions_apiserver/pkg/apis/apiextensions/" + _v
    SPECIAL[(_p, "json")] = "RawJson"
    SPECIAL[(_p, "jsonschemapropsorarray")] = "SchemaOrArray"
    SPECIAL[(_p, "jsonschemapropsorbool")] = "SchemaOrBool"
    SPECIAL[(_p, "jsonschemapropsorstringarray")] = "SchemaOrStringArray"

SCALARS = {
    "string": "Str",
    "bool": "Bool",
    "int32": "I32",
    "int64": "I64",
    "double": "F64",
    "bytes": "Bytes",
}


def norm(name):
    """Normalise a field name for joining."""
    if name.startswith("r#"):
        name = name[2:]
    return re.sub(r"[^a-z0-9]", "", name.lower())


def warn(msg):
    print(msg, file=sys.stderr)


# ---------------------------------------------------------------- k8s-pb


def pb_package(path):
    return "k8s.io." + path.replace("/", ".")


def parse_k8s_pb(src):
    """Return {(pkgpath, lname): {"name", "pkg", "fields": [...]}}."""
    msgs = {}
    for f in sorted(glob.glob(os.path.join(src, "**", "mod.rs"), recursive=True)):
        rel = os.path.relpath(os.path.dirname(f), src).replace(os.sep, "/")
        text = open(f, encoding="utf-8").read()
        # drop comments
        text = "\n".join(
            ln for ln in text.splitlines() if not ln.lstrip().startswith("//")
        )
        modpath = rel.split("/")
        for m in re.finditer(r"pub struct (\w+) \{(?:\}|(.*?)\n\})", text, re.S):
            name, body = m.group(1), m.group(2) or ""
            fields = []
            for fm in re.finditer(
                r"#\[prost\(([^\]]*)\)\]\s*pub (r#)?(\w+):\s*(.*?),\s*(?=#\[prost|$)",
                body,
                re.S,
            ):
                attrs, ident, ty = fm.group(1), fm.group(3), fm.group(4)
                tag = int(re.search(r'tag = "(\d+)"', attrs).group(1))
                fields.append(parse_pb_field(rel, modpath, name, ident, attrs, ty, tag))
            msgs[(rel, name.lower())] = {"name": name, "pkg": rel, "fields": fields}
        if "oneof" in text or "enumeration" in text:
            warn("warning: %s uses oneof/enumeration, not supported" % rel)
    return msgs


def resolve_type(modpath, ty):
    """Resolve the (last) message type path of a Rust type expression."""
    paths = re.findall(r"(?:(?:super|::)?\w+::)*\w+", ty)
    wrappers = {"Option", "Vec", "Box", "BTreeMap", "String"}
    cands = [
        p
        for p in paths
        if p.split("::")[-1] not in wrappers and not p.startswith("::")
    ]
    p = cands[-1]
    parts = p.split("::")
    base = list(modpath)
    while parts and parts[0] == "super":
        base.pop()
        parts.pop(0)
    if len(parts) == 1:
        return ("/".join(modpath), parts[0].lower())
    return ("/".join(base + parts[:-1]), parts[-1].lower())


def parse_pb_field(rel, modpath, msg, ident, attrs, ty, tag):
    first = attrs.split(",")[0].strip()
    fd = {"ident": ident, "tag": tag}
    mm = re.match(r'btree_map = "(\w+), (\w+)"', attrs)
    if mm:
        k, v = mm.group(1), mm.group(2)
        if k != "string":
            raise SystemExit("%s.%s: map key %s unsupported" % (msg, ident, k))
        fd["card"] = "Map"
        fd["ty"] = ("msg", resolve_type(modpath, ty)) if v == "message" else SCALARS[v]
        return fd
    if first.startswith("bytes"):
        first = "bytes"
    fd["card"] = "Rep" if "repeated" in attrs else "Opt"
    if first == "message":
        fd["ty"] = ("msg", resolve_type(modpath, ty))
    elif first in SCALARS:
        fd["ty"] = SCALARS[first]
    else:
        raise SystemExit("%s.%s: unsupported prost type %s" % (msg, ident, first))
    return fd


# ---------------------------------------------------------------- k8s-openapi


def parse_k8s_openapi(src):
    """Return ({version: {(pkgpath, lname): info}}, [(apiVersion, kind, key)])."""
    out = {}
    kinds = []
    for ver in OPENAPI_VERSIONS:
        base = os.path.join(src, ver)
        types = {}
        for f in sorted(glob.glob(os.path.join(base, "**", "*.rs"), recursive=True)):
            if os.path.basename(f) in ("mod.rs", "list.rs"):
                continue
            rel = os.path.relpath(os.path.dirname(f), base).replace(os.sep, "/")
            text = open(f, encoding="utf-8").read()
            m = re.search(r"^pub (struct|enum) (\w+)", text, re.M)
            if not m:
                continue
            name = m.group(2)
            json = {}
            for jm in re.finditer(r'"([^"]+)" => Field::Key_(\w+),', text):
                json[jm.group(2)] = jm.group(1)
            required = set()
            sm = re.search(r"pub struct \w+ \{(.*?)\n\}", text, re.S)
            if sm:
                for fm in re.finditer(r"^    pub (\w+): (.*),$", sm.group(1), re.M):
                    if not fm.group(2).startswith("Option<"):
                        required.add(fm.group(1))
            types[(rel, name.lower())] = {
                "name": name,
                "json": json,
                "required": required,
            }
            if ver == OPENAPI_VERSIONS[0]:
                am = re.search(r'const API_VERSION: &\'static str = "([^"]+)"', text)
                km = re.search(r'const KIND: &\'static str = "([^"]+)"', text)
                if am and km and "impl crate::Resource for" in text:
                    kinds.append((am.group(1), km.group(1), (rel, name.lower())))
        out[ver] = types
    return out, kinds


# ---------------------------------------------------------------- Go sources

GO_DIRS = {
    # Go source dir (relative to --go-src) -> k8s-pb package path
    "apimachinery/pkg/apis/meta/v1": "apimachinery/pkg/apis/meta/v1",
    "apimachinery/pkg/runtime": "apimachinery/pkg/runtime",
    "apimachinery/pkg/util/intstr": "apimachinery/pkg/util/intstr",
    "apimachinery/pkg/api/resource": "apimachinery/pkg/api/resource",
}


def go_dirs(go_src):
    dirs = dict(GO_DIRS)
    for d in sorted(glob.glob(os.path.join(go_src, "api", "*", "*"))):
        if os.path.isdir(d):
            rel = os.path.relpath(d, go_src).replace(os.sep, "/")
            dirs[rel] = rel
    for d in sorted(
        glob.glob(os.path.join(go_src, "apiextensions-apiserver/pkg/apis/apiextensions/v*"))
    ):
        rel = os.path.relpath(d, go_src).replace(os.sep, "/")
        dirs[rel] = rel.replace("apiextensions-apiserver", "apiextensions_apiserver")
    return dirs


def extract_go(go_src):
    """Rows (pkgpath, Type, tag, json, flags) for every protobuf-tagged Go field.

    flags: p = pointer, o = omitempty, i = inline."""
    rows = []
    for d, pkg in go_dirs(go_src).items():
        for f in sorted(glob.glob(os.path.join(go_src, d, "*.go"))):
            b = os.path.basename(f)
            if b.endswith("_test.go") or b.startswith("zz_") or b == "generated.pb.go":
                continue
            cur = None
            for ln in open(f, encoding="utf-8"):
                m = re.match(r"^type (\w+) struct \{", ln)
                if m:
                    cur = m.group(1)
                    continue
                if ln.startswith("}"):
                    cur = None
                    continue
                if cur is None:
                    continue
                m = re.match(r"^\s+(?:(\w+)\s+)?(\S+)\s+`(.*)`", ln)
                if not m:
                    continue
                gty, tags = m.group(2), m.group(3)
                pm = re.search(r'protobuf:"(\w+),(\d+)', tags)
                jm = re.search(r'json:"([^"]*)"', tags)
                if not pm or not jm:
                    continue
                jparts = jm.group(1).split(",")
                flags = ""
                if gty.startswith("*"):
                    flags += "p"
                if "omitempty" in jparts[1:]:
                    flags += "o"
                if "inline" in jparts[1:]:
                    flags += "i"
                rows.append((pkg, cur, int(pm.group(2)), jparts[0] or "-", flags or "-"))
    return rows


def load_go(args):
    """{(pkgpath, ltype, tag): (json name or "-", flags)}.

    With --go-src the Go sources are read (and go-fields.tsv rewritten);
    otherwise go-fields.tsv supplies the flags that matter: per type, the tags
    of non-pointer `omitempty` fields ("o") and of `json:",inline"` ones ("i")."""
    if args.go_src:
        rows = extract_go(args.go_src)
        per_type = {}
        for pkg, ty, tag, _json, flags in rows:
            o, i = per_type.setdefault((pkg, ty), ([], []))
            if "o" in flags and "p" not in flags:
                o.append(tag)
            if "i" in flags:
                i.append(tag)
        with open(GO_FIELDS, "w", encoding="utf-8") as fh:
            fh.write(
                "# written by generate.py --go-src from k8s.io/{api,apimachinery,"
                "apiextensions-apiserver} release-1.32 Go types\n"
                "# package\ttype\ttags of non-pointer omitempty fields\ttags of inline fields\n"
            )
            for (pkg, ty), (o, i) in sorted(per_type.items()):
                if o or i:
                    fh.write("%s\t%s\t%s\t%s\n" % (pkg, ty, ",".join(map(str, sorted(o))), ",".join(map(str, sorted(i)))))
        return {(pkg, ty.lower(), tag): (json, flags) for pkg, ty, tag, json, flags in rows}
    out = {}
    with open(GO_FIELDS, encoding="utf-8") as fh:
        for ln in fh:
            if ln.startswith("#") or not ln.strip():
                continue
            pkg, ty, o, i = ln.rstrip("\n").split("\t")
            for flag, tags in (("o", o), ("i", i)):
                for t in filter(None, tags.split(",")):
                    out[(pkg, ty.lower(), int(t))] = ("-", flag)
    return out


# ---------------------------------------------------------------- join


def main():
    ap = argparse.ArgumentParser()
    cargo_home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
    reg = [
        d
        for d in sorted(glob.glob(os.path.join(cargo_home, "registry/src/*/")))
        if os.path.isdir(os.path.join(d, "k8s-pb-0.9.0"))
        and os.path.isdir(os.path.join(d, "k8s-openapi-0.26.1"))
    ]
    ap.add_argument("--registry", default=reg[0] if reg else "")
    ap.add_argument("--go-src", default=None)
    ap.add_argument("--out", default=os.path.join(ROOT, "src/api/protobuf/schema.rs"))
    args = ap.parse_args()

    pb = parse_k8s_pb(os.path.join(args.registry, "k8s-pb-0.9.0", "src"))
    oa, kinds = parse_k8s_openapi(os.path.join(args.registry, "k8s-openapi-0.26.1", "src"))
    go = load_go(args)
    primary = oa[OPENAPI_VERSIONS[0]]

    def openapi_type(key):
        for ver in OPENAPI_VERSIONS:
            if key in oa[ver]:
                return ver, oa[ver][key]
        return None, None

    # Go embedded structs with json:",inline" (Volume.volumeSource, Probe.handler,
    # ...) have no JSON type of their own: their fields are joined against the
    # parent's JSON names.  `inline` holds (parent key, field tag); `borrowed`
    # maps the embedded type to the parent's k8s-openapi info.
    inline = set()
    borrowed = {}

    def json_info(key):
        _, t = openapi_type(key)
        return t if t is not None else borrowed.get(key)

    changed = True
    while changed:
        changed = False
        for key, msg in pb.items():
            parent = json_info(key)
            if parent is None or key in SPECIAL:
                continue
            names = {norm(i) for i in parent["json"]} | {norm(j) for j in parent["json"].values()}
            pjson = set(parent["json"].values())
            for f in msg["fields"]:
                if (key, f["tag"]) in inline or not isinstance(f["ty"], tuple) or f["card"] != "Opt":
                    continue
                if norm(f["ident"]) in names or f["ty"][1] in SPECIAL:
                    continue
                inner_key = f["ty"][1]
                if inner_key not in pb:
                    continue
                inner_fields = pb[inner_key]["fields"]
                hits = sum(1 for g in inner_fields if norm(g["ident"]) in names)
                if not inner_fields or 2 * hits < len(inner_fields):
                    continue
                inline.add((key, f["tag"]))
                changed = True
                if json_info(inner_key) is None:
                    borrowed[inner_key] = {"name": pb[inner_key]["name"], "json": parent["json"], "required": set()}

    def is_string_list(msg):
        f = msg["fields"]
        return len(f) == 1 and f[0]["ident"] == "items" and f[0]["ty"] == "Str" and f[0]["card"] == "Rep"

    # Which messages to emit: every message of a 1.32 type, plus whatever
    # those reference (transitively).
    wanted = [k for k in pb if k in primary or (k in SPECIAL and k[0].startswith("apimachinery/"))]
    emitted = {}
    queue = list(wanted)
    skipped_types = []
    while queue:
        key = queue.pop()
        if key in emitted:
            continue
        msg = pb.get(key)
        if msg is None:
            skipped_types.append((key, "not in k8s-pb"))
            continue
        oat = json_info(key)
        if key in SPECIAL:
            kind = SPECIAL[key]
        elif oat is None and is_string_list(msg):
            kind = "StringList"
        elif oat is None:
            skipped_types.append((key, "no JSON counterpart in k8s-openapi"))
            continue
        else:
            kind = None
        emitted[key] = (msg, oat, kind)
        for f in msg["fields"]:
            if isinstance(f["ty"], tuple):
                queue.append(f["ty"][1])
    # k8s-pb messages never reached (not in k8s-openapi 1.32)
    not_emitted = sorted(k for k in pb if k not in emitted)

    # Resolve type display names and indices.
    def display(key):
        msg, oat, _ = emitted[key]
        name = oat["name"] if oat else msg["name"]
        return pb_package(key[0]) + "." + name

    order = sorted(emitted, key=lambda k: display(k).lower())
    index = {k: i for i, k in enumerate(order)}

    problems = []
    stats = {"fields": 0, "omitzero": 0, "inline": 0, "fallback": 0}
    out_types = []
    for key in order:
        msg, oat, kind = emitted[key]
        fields = []
        if oat is not None and kind is None:
            jmap = {norm(ident): (ident, js) for ident, js in oat["json"].items()}
            jmap_by_json = {norm(js): (ident, js) for ident, js in oat["json"].items()}
        for f in sorted(msg["fields"], key=lambda f: f["tag"]):
            ty = f["ty"]
            if isinstance(ty, tuple):
                if ty[1] not in index:
                    problems.append("%s.%s (tag %d): type %s/%s skipped" % (display(key), f["ident"], f["tag"], ty[1][0], ty[1][1]))
                    continue
                rty = "M(%d)" % index[ty[1]]
            else:
                rty = ty
            card = f["card"]
            gorow = go.get((key[0], msg["name"].lower(), f["tag"]))
            if gorow is None and oat is not None:
                gorow = go.get((key[0], oat["name"].lower(), f["tag"]))
            if kind is not None:
                json = f["ident"]  # special types: proto names, decoded by hand
            else:
                j = jmap.get(norm(f["ident"]))
                if j is None:
                    # fall back to the same type in other k8s-openapi versions
                    for ver in OPENAPI_VERSIONS[1:]:
                        t2 = oa[ver].get(key)
                        if t2:
                            jm2 = {norm(i): (i, js) for i, js in t2["json"].items()}
                            j = jm2.get(norm(f["ident"]))
                            if j:
                                stats["fallback"] += 1
                                break
                if j is None:
                    j = jmap_by_json.get(norm(f["ident"]))
                if j is None and (key, f["tag"]) in inline:
                    card = "Inline"
                    stats["inline"] += 1
                    j = (None, "")
                    if gorow and "i" not in gorow[1]:
                        problems.append("%s.%s: inline here but not in Go" % (display(key), f["ident"]))
                if j is None:
                    problems.append("%s.%s (tag %d): no JSON name in k8s-openapi" % (display(key), f["ident"], f["tag"]))
                    continue
                json = j[1]
                if gorow and gorow[0] != "-" and gorow[0] != json:
                    problems.append("%s.%s: k8s-openapi says %r, Go says %r" % (display(key), f["ident"], json, gorow[0]))
                # Scalars that are non-pointer `omitempty` Go fields: encoding/json
                # drops their zero values while protobuf always carries them.
                if card == "Opt" and not isinstance(ty, tuple) and gorow:
                    if "o" in gorow[1] and "p" not in gorow[1]:
                        card = "OmitZero"
                        stats["omitzero"] += 1
            stats["fields"] += 1
            fields.append((f["tag"], json, rty, card))
        out_types.append((display(key), kind or "None", fields))

    # Kinds: (apiVersion, kind) -> type, and group -> proto package prefix.
    kind_rows = []
    groups = {}
    for api_version, kind, key in kinds:
        if key in index:
            kind_rows.append((api_version, kind, index[key]))
            group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
            if not key[0].startswith("apimachinery/"):
                groups[group] = pb_package(key[0].rsplit("/", 1)[0])
    kind_rows.sort()

    write_rs(args.out, out_types, kind_rows, sorted(groups.items()))

    for p in problems:
        warn("unjoined: " + p)
    for k, why in sorted(set(skipped_types)):
        warn("skipped type %s/%s: %s" % (k[0], k[1], why))
    warn(
        "%d types, %d fields (%d omit-zero, %d inline, %d names from newer k8s-openapi), "
        "%d kinds, %d problems, %d k8s-pb messages not emitted, wrote %s (%d bytes)"
        % (
            len(out_types),
            stats["fields"],
            stats["omitzero"],
            stats["inline"],
            stats["fallback"],
            len(kind_rows),
            len(problems),
            len(not_emitted),
            os.path.relpath(args.out),
            os.path.getsize(args.out),
        )
    )


def write_rs(path, types, kinds, groups):
    lines = [
        "// @generated by tools/protobuf-schema/generate.py — do not edit",
        "// Sources: k8s-pb 0.9.0 (tags, wire types), k8s-openapi 0.26.1 v1_32 (JSON names,",
        "// kinds), tools/protobuf-schema/go-fields.tsv (Go omitempty/pointer flags).",
        "#![allow(clippy::all)]",
        "use super::schema_types::{Card::*, Field as F, Msg, Special, Ty::*};",
        "",
        "/// All message types, sorted by lowercase full proto name.",
        "pub(crate) static TYPES: &[Msg] = &[",
    ]
    for i, (name, special, fields) in enumerate(types):
        fs = ",".join('F(%d,"%s",%s,%s)' % f for f in fields)
        lines.append(
            'Msg{name:"%s",special:Special::%s,fields:&[%s]}, // %d' % (name, special, fs, i)
        )
    lines.append("];")
    lines.append("")
    lines.append("/// (apiVersion, kind) -> index into TYPES, sorted.")
    lines.append("pub(crate) static KINDS: &[(&str, &str, u16)] = &[")
    for a, k, i in kinds:
        lines.append('("%s","%s",%d),' % (a, k, i))
    lines.append("];")
    lines.append("")
    lines.append("/// API group -> proto package prefix (append `.<version>.<Kind>`), sorted.")
    lines.append("pub(crate) static GROUPS: &[(&str, &str)] = &[")
    for g, p in groups:
        lines.append('("%s","%s"),' % (g, p))
    lines.append("];")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
