#!/usr/bin/python3
"""Extracts the compact KubeVirt v1 schema Orrery's kubevirt backend checks
against, from KubeVirt's published OpenAPI document
(kubevirt/kubevirt, api/openapi-spec/swagger.json).

Usage: /usr/bin/python3 scripts/kubevirt-schema.py SWAGGER.json VERSION COMMIT > \
         engine/src/backends/kubevirt/kubevirt-v1-schema.json

Kept: for every definition reachable from the roots below (following
$ref), its type, required fields and, per property, type, format, $ref,
items, additionalProperties and enum; for every operation on the paths the
backend uses, its method, path template, body definition and query
parameters. Dropped: descriptions, defaults, x-kubernetes-* hints.

A few string fields that the backend writes carry their allowed values only
in prose ("supported values: virtio, sata, scsi, usb."); for the fields
listed in DESCRIBED_ENUMS the values are taken from that prose by the given
pattern and kept as "enum" with "x-enum-from": "description", so the file
says which enums KubeVirt publishes and which this script read.
"""
import json
import re
import sys

ROOTS = [
    "v1.VirtualMachine", "v1.VirtualMachineInstance",
    "v1.VirtualMachineInstanceList", "v1.AddVolumeOptions",
    "v1.RemoveVolumeOptions", "v1.StartOptions", "v1.StopOptions",
    "v1.RestartOptions", "v1.MigrateOptions", "v1.PauseOptions",
    "v1.UnpauseOptions", "k8s.io.apimachinery.pkg.apis.meta.v1.Status",
    "k8s.io.apimachinery.pkg.apis.meta.v1.WatchEvent",
]

# (definition, property): a regex whose first group holds the values.
DESCRIBED_ENUMS = {
    ("v1.DiskTarget", "bus"): r"supported values: ([a-z, ]+)\.",
    ("v1.Interface", "model"): r"One of: ([a-z0-9_, ]+)\.",
    ("v1.Interface", "state"): r"((?:`[a-z]+`[^`]*)+)Empty value",
    ("v1.VirtualMachineSpec", "runStrategy"): r"allowed values: (.*)",
}

PATH_PREFIXES = (
    "/apis/kubevirt.io/v1/namespaces/{namespace}/virtualmachines",
    "/apis/kubevirt.io/v1/namespaces/{namespace}/virtualmachineinstances",
    "/apis/subresources.kubevirt.io/v1/namespaces/{namespace}/virtualmachines/",
    "/apis/subresources.kubevirt.io/v1/namespaces/{namespace}/virtualmachineinstances/",
)
SUBRESOURCES = {"addvolume", "removevolume", "start", "stop", "restart",
                "migrate", "pause", "unpause"}


def ref_name(ref):
    return ref.rsplit("/", 1)[-1]


def compact_schema(s, out_refs):
    c = {}
    if "$ref" in s:
        name = ref_name(s["$ref"])
        out_refs.add(name)
        return {"$ref": name}
    for k in ("type", "format", "enum"):
        if k in s:
            c[k] = s[k]
    if "items" in s:
        c["items"] = compact_schema(s["items"], out_refs)
    if "additionalProperties" in s:
        ap = s["additionalProperties"]
        c["additionalProperties"] = (compact_schema(ap, out_refs)
                                     if isinstance(ap, dict) else ap)
    return c


def described_enum(defn, prop, desc):
    m = re.search(DESCRIBED_ENUMS[(defn, prop)], desc)
    if not m:
        sys.exit("no values for %s.%s in: %s" % (defn, prop, desc))
    text = m.group(1)
    vals = re.findall(r'[`"]([A-Za-z]+)[`"]', text)
    if not vals:
        vals = [v.strip() for v in text.split(",") if v.strip()]
    return vals


def main():
    swagger = json.load(open(sys.argv[1]))
    defs = swagger["definitions"]
    version, commit = sys.argv[2], sys.argv[3]
    params = swagger.get("parameters", {})
    ops = []
    for path, item in sorted(swagger["paths"].items()):
        if not path.startswith(PATH_PREFIXES):
            continue
        if path.startswith("/apis/subresources"):
            if path.rsplit("/", 1)[-1] not in SUBRESOURCES:
                continue
        elif path.count("/") > 7:
            continue  # /status and the like: not ours
        common = item.get("parameters", [])
        for method, op in sorted(item.items()):
            if method == "parameters":
                continue
            body, body_required, query = None, False, []
            for p in common + op.get("parameters", []):
                if "$ref" in p:
                    p = params[ref_name(p["$ref"])]
                if p["in"] == "body":
                    body = ref_name(p["schema"]["$ref"])
                    body_required = bool(p.get("required"))
                elif p["in"] == "query":
                    query.append(p["name"])
            o = {"method": method.upper(), "path": path}
            if body:
                o["body"] = body
                o["bodyRequired"] = body_required
            if "consumes" in op:
                o["consumes"] = op["consumes"]
            if query:
                o["query"] = sorted(set(query))
            ops.append(o)

    defs = swagger["definitions"]
    out_defs = {}
    todo = list(ROOTS) + sorted({o["body"] for o in ops if "body" in o})
    while todo:
        name = todo.pop()
        if name in out_defs:
            continue
        d = defs[name]
        refs = set()
        c = {}
        if "type" in d:
            c["type"] = d["type"]
        if "format" in d:
            c["format"] = d["format"]
        if d.get("required"):
            c["required"] = sorted(d["required"])
        if "properties" in d:
            props = {}
            for p, ps in sorted(d["properties"].items()):
                props[p] = compact_schema(ps, refs)
                if (name, p) in DESCRIBED_ENUMS:
                    props[p]["enum"] = described_enum(name, p,
                                                      ps["description"])
                    props[p]["x-enum-from"] = "description"
            c["properties"] = props
        if "additionalProperties" in d:
            c["additionalProperties"] = compact_schema(
                d["additionalProperties"], refs)
        out_defs[name] = c
        todo.extend(sorted(refs))
    missing = [k for k in DESCRIBED_ENUMS if k[0] not in out_defs]
    if missing:
        sys.exit("described enums of unreached definitions: %r" % missing)

    doc = {
        "source": {
            "repository": "kubevirt/kubevirt",
            "file": "api/openapi-spec/swagger.json",
            "version": version,
            "commit": commit,
            "swagger": swagger["swagger"],
            "extractedBy": "scripts/kubevirt-schema.py",
        },
        "definitions": dict(sorted(out_defs.items())),
        "operations": ops,
    }
    json.dump(doc, sys.stdout, indent=None, separators=(",", ":"),
              sort_keys=False)
    sys.stdout.write("\n")


main()
