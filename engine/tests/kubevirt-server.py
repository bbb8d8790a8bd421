#!/usr/bin/python3
"""A small Kubernetes API server with KubeVirt's v1 resources, for the
kubevirt backend's tests. It is not a mock of the client: it holds its own
state and its own copy of the rules, and it refuses what a real one would.

- HTTPS with a certificate the test makes; bearer-token and
  client-certificate authentication (anything else: 401).
- Every request is checked against the compact KubeVirt v1 schema
  (engine/src/backends/kubevirt/kubevirt-v1-schema.json): the method and
  path must be an operation of it, the query only its parameters, the body
  valid for it (a JSON Patch op by op, and the patched object as a whole).
  A violation is answered 422 and recorded (the tests read the count).
- VirtualMachines and their instances are stored; resourceVersions come
  from one counter; PUT and PATCH with a stale resourceVersion get 409.
- The subresources start, stop, restart, pause, unpause, migrate,
  addvolume and removevolume change the stored objects as KubeVirt would.
- Watches of VirtualMachineInstances stream JSON lines (chunked), resume
  from a resourceVersion, and say 410 (an ERROR event) for one too old.
- Faults on demand through POST /orrery-test/control: an answer with any
  status, a slow answer, dropped watches, a VM changed behind the
  client's back ("touch"), the event history expired.

Usage: kubevirt-server.py --schema S --cert C --key K --client-ca CA
       --token T --port-file F      (listens on 127.0.0.1, a free port)
Python 3 standard library only (Debian's python3).
"""
import argparse
import copy
import os
import http.server
import json
import re
import socketserver
import ssl
import sys
import threading
import time
import urllib.parse
import uuid


# ---- the schema ----------------------------------------------------------

class Schema:
    def __init__(self, path):
        with open(path) as f:
            doc = json.load(f)
        self.defs = doc["definitions"]
        self.ops = doc["operations"]
        for op in self.ops:
            pat = re.escape(op["path"])
            pat = pat.replace(r"\{namespace\}", NAME).replace(r"\{name\}", NAME)
            op["re"] = re.compile("^" + pat + "$")

    def operation(self, method, path):
        known = False
        for op in self.ops:
            if op["re"].match(path):
                known = True
                if op["method"] == method:
                    return op, None
        return None, ("%s is not an operation of %s" % (method, path)
                      if known else "%s is not a path of the API" % path)

    def check(self, node, v, where):
        if "$ref" in node:
            name = node["$ref"]
            node = self.defs[name]
        else:
            name = "this object"
        t = node.get("type")
        if t is None:
            return None
        types = t if isinstance(t, list) else [t]
        if isinstance(v, bool):
            ok = "boolean" in types
        elif isinstance(v, int):
            ok = "integer" in types or "number" in types
            if ok and node.get("format") == "int32" and not -2**31 <= v < 2**31:
                return "%s: does not fit an int32" % where
        elif isinstance(v, float):
            ok = "number" in types
        elif isinstance(v, str):
            ok = "string" in types
            if ok and "enum" in node and v not in node["enum"]:
                return "%s: must be one of %s, got %r" % (
                    where, ", ".join(node["enum"]), v)
        elif isinstance(v, list):
            ok = "array" in types
            if ok and "items" in node:
                for i, x in enumerate(v):
                    err = self.check(node["items"], x, "%s[%d]" % (where, i))
                    if err:
                        return err
        elif isinstance(v, dict):
            ok = "object" in types
            if ok:
                return self.check_object(node, name, v, where)
        else:
            ok = False
        return None if ok else "%s: must be %s" % (where, "/".join(types))

    def check_object(self, node, name, v, where):
        props = node.get("properties")
        extra = node.get("additionalProperties")
        for r in node.get("required", []):
            if v.get(r) is None:
                return "%s.%s: is required" % (where, r)
        for k, x in v.items():
            p = (props or {}).get(k)
            if p is None and isinstance(extra, dict):
                p = extra
            if p is None:
                if props is None and extra is None:
                    continue
                return "%s.%s: is not a field of %s" % (where, k, name)
            if x is None:
                continue
            err = self.check(p, x, "%s.%s" % (where, k))
            if err:
                return err
        return None

    def resolve(self, node, pointer):
        for tok in pointer.split("/")[1:]:
            tok = tok.replace("~1", "/").replace("~0", "~")
            if "$ref" in node:
                node = self.defs[node["$ref"]]
            if node.get("type") == "array":
                if tok != "-" and not tok.isdigit():
                    return None
                node = node.get("items", {})
            elif tok in node.get("properties", {}):
                node = node["properties"][tok]
            elif isinstance(node.get("additionalProperties"), dict):
                node = node["additionalProperties"]
            else:
                return None
        return node

    def check_patch(self, target, ops, where):
        if not isinstance(ops, list) or not ops:
            return "%s: a JSON Patch must be a non-empty array" % where
        for i, op in enumerate(ops):
            w = "%s[%d]" % (where, i)
            if not isinstance(op, dict) or op.get("op") not in (
                    "add", "remove", "replace", "test"):
                return "%s: op must be add, remove, replace or test" % w
            node = self.resolve({"$ref": target}, op.get("path", ""))
            if node is None or not op.get("path", "").startswith("/"):
                return "%s.path: %s is not a field of %s" % (
                    w, op.get("path"), target)
            if op["op"] == "remove":
                if "value" in op:
                    return "%s: a remove takes no value" % w
                continue
            if "value" not in op:
                return "%s: a %s needs a value" % (w, op["op"])
            err = self.check(node, op["value"], "%s.value" % w)
            if err:
                return err
        return None


NAME = r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?"


def json_patch(obj, ops):
    """RFC 6902 on a copy; raises ValueError (422) or KeyError."""
    doc = copy.deepcopy(obj)
    for op in ops:
        toks = [t.replace("~1", "/").replace("~0", "~")
                for t in op["path"].split("/")[1:]]
        parent = doc
        for t in toks[:-1]:
            parent = parent[int(t)] if isinstance(parent, list) else parent[t]
        last = toks[-1]
        kind = op["op"]
        if isinstance(parent, list):
            if kind == "add":
                i = len(parent) if last == "-" else int(last)
                if i > len(parent):
                    raise ValueError("index out of range: " + op["path"])
                parent.insert(i, copy.deepcopy(op["value"]))
                continue
            i = int(last)
            if i >= len(parent):
                raise ValueError("index out of range: " + op["path"])
            if kind == "remove":
                del parent[i]
            elif kind == "replace":
                parent[i] = copy.deepcopy(op["value"])
            elif parent[i] != op["value"]:
                raise ValueError("test failed: " + op["path"])
        else:
            if kind == "add":
                parent[last] = copy.deepcopy(op["value"])
            elif last not in parent:
                raise ValueError("no such member: " + op["path"])
            elif kind == "remove":
                del parent[last]
            elif kind == "replace":
                parent[last] = copy.deepcopy(op["value"])
            elif parent[last] != op["value"]:
                raise ValueError("test failed: " + op["path"])
    return doc


# ---- the store -----------------------------------------------------------

class ApiError(Exception):
    def __init__(self, code, reason, message):
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


class Store:
    def __init__(self, schema):
        self.schema = schema
        self.lock = threading.Condition()
        self.rv = 100
        self.vms = {}
        self.vmis = {}
        self.events = []  # (rv, type, vmi), VMIs only
        self.oldest = 0  # watches from an older rv get 410
        self.drops = 0  # bumped by drop_watches
        self.faults = []
        self.requests = 0
        self.violations = []
        self.watches = 0

    def next_rv(self):
        self.rv += 1
        return str(self.rv)

    def produced(self, defn, obj, what):
        err = self.schema.check({"$ref": defn}, obj, what)
        if err:
            self.violations.append("server-made " + err)

    def vmi_event(self, kind, vmi):
        vmi["metadata"]["resourceVersion"] = self.next_rv()
        self.produced("v1.VirtualMachineInstance", vmi, "vmi")
        self.events.append((self.rv, kind, copy.deepcopy(vmi)))
        self.lock.notify_all()

    def vm(self, ns, name):
        vm = self.vms.get((ns, name))
        if vm is None:
            raise ApiError(404, "NotFound",
                           'virtualmachines.kubevirt.io "%s" not found' % name)
        return vm

    def vmi(self, ns, name):
        vmi = self.vmis.get((ns, name))
        if vmi is None:
            raise ApiError(409, "Conflict", "VM is not running")
        return vmi

    def save_vm(self, vm):
        vm["metadata"]["resourceVersion"] = self.next_rv()
        vm["metadata"]["generation"] = vm["metadata"].get("generation", 0) + 1
        self.produced("v1.VirtualMachine", vm, "vm")

    def sync_vmi(self, ns, name):
        """LiveUpdate: the running instance follows the VM's devices."""
        vmi = self.vmis.get((ns, name))
        if vmi is None:
            return
        spec = self.vm(ns, name)["spec"]["template"]["spec"]
        vspec = vmi["spec"]
        vspec["volumes"] = copy.deepcopy(spec.get("volumes", []))
        vspec["networks"] = copy.deepcopy(spec.get("networks", []))
        vdev = vspec["domain"]["devices"]
        dev = spec["domain"].get("devices", {})
        vdev["disks"] = copy.deepcopy(dev.get("disks", []))
        vdev["interfaces"] = copy.deepcopy(dev.get("interfaces", []))
        vspec["domain"]["memory"] = copy.deepcopy(spec["domain"]["memory"])
        st = vmi["status"]
        st["volumeStatus"] = [
            dict({"name": v["name"], "phase": "Ready",
                  "target": "sd%c" % (97 + i)},
                 **({"hotplugVolume": {"attachPodName": "hp-" + name}}
                    if any(s.get("hotpluggable")
                           for s in v.values() if isinstance(s, dict))
                    else {}))
            for i, v in enumerate(vspec["volumes"])]
        st["interfaces"] = [
            dict({"name": i["name"]},
                 **({"mac": i["macAddress"]} if "macAddress" in i else {}))
            for i in vdev["interfaces"] if i.get("state") != "absent"]
        st["memory"] = {"guestCurrent": vspec["domain"]["memory"]["guest"]}
        self.vmi_event("MODIFIED", vmi)


# ---- HTTP ----------------------------------------------------------------

def status_obj(code, reason, message):
    return {"kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure" if code >= 300 else "Success",
            "message": message, "reason": reason, "code": code}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    store = None
    token = None

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("kubevirt-server: " + fmt % args + "\n")

    def reply(self, code, obj, raw=None):
        body = raw if raw is not None else json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def fail(self, code, reason, message):
        self.reply(code, status_obj(code, reason, message))

    def authenticated(self):
        auth = self.headers.get("Authorization", "")
        if auth == "Bearer " + self.token:
            return True
        return bool(self.connection.getpeercert())

    def do_GET(self):
        self.handle_api("GET")

    def do_PUT(self):
        self.handle_api("PUT")

    def do_POST(self):
        self.handle_api("POST")

    def do_PATCH(self):
        self.handle_api("PATCH")

    def do_DELETE(self):
        self.handle_api("DELETE")

    def handle_api(self, method):
        st = self.store
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        if not self.authenticated():
            return self.fail(401, "Unauthorized", "Unauthorized")
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/orrery-test/control":
            return self.control(json.loads(raw or b"{}"))
        query = urllib.parse.parse_qs(url.query)
        with st.lock:
            st.requests += 1
            fault = None
            for f in st.faults:
                if f["count"] > 0 and f.get("method", method) == method and \
                        re.search(f.get("path", ""), url.path):
                    f["count"] -= 1
                    fault = dict(f)
                    break
        if fault and fault.get("delay_ms"):
            time.sleep(fault["delay_ms"] / 1000.0)
        if fault and fault.get("status"):
            return self.fail(fault["status"], fault.get("reason", "Injected"),
                             "injected by the test")
        op, why = st.schema.operation(method, url.path)
        body = None
        err = why
        if op and not err:
            bad = [q for q in query if q not in op.get("query", [])]
            if bad:
                err = "query parameter %r is not one %s %s takes" % (
                    bad[0], method, op["path"])
        if op and not err and raw:
            try:
                body = json.loads(raw)
            except ValueError:
                err = "the body is not JSON"
        if op and not err:
            if body is None and op.get("bodyRequired") and method != "DELETE":
                err = "a %s body is required" % op["body"]
            elif body is not None and method == "PATCH":
                if self.headers.get("Content-Type") != \
                        "application/json-patch+json":
                    err = "a PATCH here must be application/json-patch+json"
                else:
                    err = st.schema.check_patch(
                        "v1.VirtualMachine" if "/virtualmachines/" in url.path
                        else "v1.VirtualMachineInstance", body, "patch")
            elif body is not None:
                err = st.schema.check({"$ref": op["body"]}, body, op["body"])
        if err:
            with st.lock:
                st.violations.append("%s %s: %s" % (method, url.path, err))
            return self.fail(422 if op else 404, "Invalid", err)
        try:
            if query.get("watch") == ["true"]:
                return self.watch(url.path, query)
            with st.lock:
                code, obj = self.route(method, url.path, body)
            self.reply(code, obj)
        except ApiError as e:
            self.fail(e.code, e.reason, e.message)

    # ---- resources ----

    def route(self, method, path, body):
        st = self.store
        parts = path.strip("/").split("/")
        sub = parts[0] == "apis" and parts[1] == "subresources.kubevirt.io"
        ns = parts[4]
        kind = parts[5]
        name = parts[6] if len(parts) > 6 else None
        verb = parts[7] if len(parts) > 7 else None
        if sub:
            return self.subresource(kind, ns, name, verb, body)
        if kind == "virtualmachineinstances":
            if name is None:
                items = [v for (n, _), v in st.vmis.items() if n == ns]
                return 200, {"apiVersion": "kubevirt.io/v1",
                             "kind": "VirtualMachineInstanceList",
                             "metadata": {"resourceVersion": str(st.rv)},
                             "items": items}
            vmi = st.vmis.get((ns, name))
            if vmi is None:
                raise ApiError(404, "NotFound", 'virtualmachineinstances.'
                               'kubevirt.io "%s" not found' % name)
            return 200, vmi
        if method == "POST":
            name = body["metadata"].get("name")
            if (ns, name) in st.vms:
                raise ApiError(409, "AlreadyExists", 'virtualmachines.'
                               'kubevirt.io "%s" already exists' % name)
            if body["metadata"].get("namespace", ns) != ns:
                raise ApiError(400, "BadRequest", "namespace mismatch")
            vm = copy.deepcopy(body)
            vm["metadata"].update({"uid": str(uuid.uuid4()), "namespace": ns,
                                   "creationTimestamp": "2026-01-01T00:00:00Z"})
            vm["status"] = {"printableStatus": "Stopped"}
            st.save_vm(vm)
            st.vms[(ns, name)] = vm
            return 201, vm
        vm = st.vm(ns, name)
        if method == "GET":
            return 200, vm
        if method == "DELETE":
            del st.vms[(ns, name)]
            vmi = st.vmis.pop((ns, name), None)
            if vmi:
                st.vmi_event("DELETED", vmi)
            return 200, status_obj(200, "", "deleted")
        if method == "PUT":
            new = body
        else:  # PATCH
            try:
                new = json_patch(vm, body)
            except (ValueError, KeyError, IndexError, TypeError) as e:
                raise ApiError(422, "Invalid", "the patch does not apply: %s"
                               % e)
            err = st.schema.check({"$ref": "v1.VirtualMachine"}, new, "vm")
            if err:
                st.violations.append("patched VM: " + err)
                raise ApiError(422, "Invalid", err)
        if new["metadata"].get("resourceVersion") != \
                vm["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", 'Operation cannot be fulfilled on '
                           'virtualmachines.kubevirt.io "%s": the object has '
                           'been modified; please apply your changes to the '
                           'latest version and try again' % name)
        new = copy.deepcopy(new)
        new["status"] = vm.get("status", {})
        st.save_vm(new)
        st.vms[(ns, name)] = new
        st.sync_vmi(ns, name)
        return 200, new

    def subresource(self, kind, ns, name, verb, body):
        st = self.store
        vm = st.vm(ns, name)
        tspec = vm["spec"]["template"]["spec"]
        if verb == "start":
            if (ns, name) in st.vmis:
                raise ApiError(409, "Conflict", "VM is already running")
            cores = tspec["domain"].get("cpu", {})
            vmi = {"apiVersion": "kubevirt.io/v1",
                   "kind": "VirtualMachineInstance",
                   "metadata": {"name": name, "namespace": ns,
                                "uid": str(uuid.uuid4()),
                                "labels": vm["spec"]["template"].get(
                                    "metadata", {}).get("labels", {})},
                   "spec": copy.deepcopy(tspec),
                   "status": {"phase": "Scheduling"}}
            st.vmis[(ns, name)] = vmi
            st.vmi_event("ADDED", vmi)
            vmi["status"] = {
                "phase": "Running", "nodeName": "node-1",
                "conditions": [{"type": "Ready", "status": "True"}],
                "currentCPUTopology": {k: cores.get(k, 1) for k in
                                       ("sockets", "cores", "threads")}}
            vm["status"] = {"printableStatus": "Running", "ready": True,
                            "created": True}
            st.sync_vmi(ns, name)
            return 200, ""
        if verb == "stop":
            vmi = st.vmi(ns, name)
            vmi["status"]["phase"] = "Succeeded"
            st.vmi_event("MODIFIED", vmi)
            del st.vmis[(ns, name)]
            st.vmi_event("DELETED", vmi)
            vm["status"] = {"printableStatus": "Stopped"}
            return 200, ""
        if verb in ("restart", "migrate"):
            vmi = st.vmi(ns, name)
            if verb == "migrate":
                target = (body or {}).get("addedNodeSelector", {}).get(
                    "kubernetes.io/hostname", "node-2")
                vmi["status"]["migrationState"] = {
                    "completed": True, "sourceNode": vmi["status"]["nodeName"],
                    "targetNode": target}
                vmi["status"]["nodeName"] = target
            st.vmi_event("MODIFIED", vmi)
            return 200, ""
        if verb in ("pause", "unpause"):
            vmi = st.vmi(ns, name)
            conds = vmi["status"].setdefault("conditions", [])
            paused = any(c["type"] == "Paused" for c in conds)
            if paused == (verb == "pause"):
                raise ApiError(409, "Conflict", "VMI is %s paused" %
                               ("already" if paused else "not"))
            if verb == "pause":
                conds.append({"type": "Paused", "status": "True"})
            else:
                vmi["status"]["conditions"] = [c for c in conds
                                               if c["type"] != "Paused"]
            st.vmi_event("MODIFIED", vmi)
            return 200, ""
        if verb == "addvolume":
            vols = tspec.setdefault("volumes", [])
            if any(v["name"] == body["name"] for v in vols):
                raise ApiError(409, "Conflict", "Unable to add volume [%s] "
                               "because it already exists" % body["name"])
            vol = dict(body["volumeSource"], name=body["name"])
            disk = dict(body["disk"], name=body["name"])
            vols.append(vol)
            tspec["domain"].setdefault("devices", {}).setdefault(
                "disks", []).append(disk)
            st.save_vm(vm)
            st.sync_vmi(ns, name)
            return 202, ""
        if verb == "removevolume":
            vols = tspec.get("volumes", [])
            vol = next((v for v in vols if v["name"] == body["name"]), None)
            if vol is None:
                raise ApiError(404, "NotFound", "no volume named %s" %
                               body["name"])
            if not any(isinstance(s, dict) and s.get("hotpluggable")
                       for s in vol.values()):
                raise ApiError(400, "BadRequest", "Unable to remove volume "
                               "[%s] because it is not hotpluggable" %
                               body["name"])
            tspec["volumes"] = [v for v in vols if v is not vol]
            devs = tspec["domain"].get("devices", {})
            devs["disks"] = [d for d in devs.get("disks", [])
                             if d["name"] != body["name"]]
            st.save_vm(vm)
            st.sync_vmi(ns, name)
            return 202, ""
        raise ApiError(404, "NotFound", "no subresource " + verb)

    # ---- watch ----

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def watch(self, path, query):
        st = self.store
        parts = path.strip("/").split("/")
        ns = parts[4]
        sel = (query.get("fieldSelector") or [""])[0]
        name = sel[len("metadata.name="):] if sel.startswith(
            "metadata.name=") else None
        rv = int((query.get("resourceVersion") or ["0"])[0] or 0)
        deadline = time.time() + int((query.get("timeoutSeconds") or
                                      ["1800"])[0])
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        with st.lock:
            st.watches += 1
            drops = st.drops
            if rv and rv < st.oldest:
                self.chunk(json.dumps({"type": "ERROR", "object": status_obj(
                    410, "Expired", "too old resource version: %d (%d)" %
                    (rv, st.oldest))}).encode() + b"\n")
                self.chunk(b"")
                return
            if not rv:  # from now: the current object as ADDED
                for (n, nm), vmi in st.vmis.items():
                    if n == ns and (name is None or nm == name):
                        self.chunk(json.dumps({"type": "ADDED", "object": vmi})
                                   .encode() + b"\n")
                rv = st.rv
            while True:
                for erv, kind, vmi in st.events:
                    if erv > rv and vmi["metadata"]["namespace"] == ns and (
                            name is None or vmi["metadata"]["name"] == name):
                        self.chunk(json.dumps({"type": kind, "object": vmi})
                                   .encode() + b"\n")
                rv = max([rv] + [e[0] for e in st.events])
                if st.drops != drops:
                    # A drop: the connection just goes away mid-stream.
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if time.time() >= deadline:
                    self.chunk(b"")
                    return
                st.lock.wait(0.2)

    # ---- control ----

    def control(self, req):
        st = self.store
        with st.lock:
            if "fault" in req:
                st.faults.append(req["fault"])
            if req.get("clear_faults"):
                st.faults = []
            if req.get("drop_watches"):
                st.drops += 1
                st.lock.notify_all()
            if "touch" in req:
                ns, name = req.get("namespace", "default"), req["touch"]
                vm = st.vm(ns, name)
                ann = vm["metadata"].setdefault("annotations", {})
                ann["orrery.io/touched"] = str(int(ann.get(
                    "orrery.io/touched", "0")) + 1)
                st.save_vm(vm)
            if req.get("expire"):
                st.oldest = st.rv + 1
                st.events = []
            out = {"requests": st.requests, "violations": st.violations,
                   "watches": st.watches, "rv": st.rv}
        self.reply(200, out)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    verbose = False
    tls = None  # the ssl.SSLContext

    def finish_request(self, request, client_address):
        # The TLS handshake happens here, in the connection's own thread: a
        # client that connects and stalls (a test that gave up mid-way)
        # must not hold up every other connection in accept().
        request.settimeout(30)
        try:
            request = self.tls.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            request.close()
            return
        request.settimeout(None)
        try:
            super().finish_request(request, client_address)
        finally:
            try:
                request.close()
            except OSError:
                pass

    def handle_error(self, request, client_address):
        # A client that gave up (its deadline, a cancelled watch, a TLS
        # handshake it refused) is part of the tests, not a server error.
        if isinstance(sys.exc_info()[1], (OSError, ssl.SSLError)):
            return
        super().handle_error(request, client_address)


def main():
    ap = argparse.ArgumentParser()
    for a in ("--schema", "--cert", "--key", "--client-ca", "--token",
              "--port-file"):
        ap.add_argument(a, required=True)
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    Handler.store = Store(Schema(args.schema))
    Handler.token = args.token
    srv = Server(("127.0.0.1", 0), Handler)
    srv.verbose = args.verbose
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    ctx.load_verify_locations(args.client_ca)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    srv.tls = ctx
    with open(args.port_file + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(args.port_file + ".tmp", args.port_file)
    srv.serve_forever()


main()
