#!/usr/bin/env python3
"""Re-capture the kubectl protobuf request bodies in src/api/protobuf/testdata.

Runs a tiny plain-HTTP logging API server on 127.0.0.1 (discovery for the
needed resources; POST bodies are saved and answered 201 with a plausible
object), points `kubectl --server http://127.0.0.1:PORT` at it, and writes
testdata/<name>.pb for each command below. For commands with a client-side
dry run it also writes testdata/<name>.json = `kubectl ... --dry-run=client -o
json` (the JSON kubectl would have sent); the others' .json files are kept.

Usage: python3 tools/protobuf-schema/capture_fixtures.py [--kubectl kubectl]
Python 3 standard library only; needs kubectl (1.32) on PATH.
"""

import argparse
import json
import os
import shlex
import subprocess
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
TESTDATA = os.path.join(os.path.dirname(os.path.dirname(HERE)), "src/api/protobuf/testdata")

# (name, kubectl args, args after "--" or None, has client dry run)
COMMANDS = [
    ("deployment", "create deployment web --image=nginx:1.27 --replicas=3 --port=80", None, True),
    ("configmap", "create configmap c --from-literal=a=1 --from-literal=b=two", None, True),
    ("secret", "create secret generic s --from-literal=password=hunter2", None, True),
    ("namespace", "create namespace n", None, True),
    ("service-nodeport", "create service nodeport web --tcp=80:8080 --node-port=30080", None, True),
    ("job", "create job j --image=busybox", "echo hi", True),
    ("cronjob", "create cronjob cj --image=busybox --schedule='*/5 * * * *'", "date", True),
    ("serviceaccount", "create serviceaccount sa", None, True),
    ("role", "create role r --verb=get --resource=pods", None, True),
    ("rolebinding", "create rolebinding rb --role=r --user=bob", None, True),
    ("clusterrole", "create clusterrole cr --verb=list --resource=nodes", None, True),
    ("quota", "create quota q --hard=pods=10", None, True),
    ("priorityclass", "create priorityclass pc --value=1000", None, True),
    ("pdb", "create poddisruptionbudget pdb --selector=app=web --min-available=1", None, True),
    ("ingress", "create ingress ing --rule=foo.com/bar=svc1:8080", None, True),
    ("clusterrolebinding", "create clusterrolebinding crb --clusterrole=cr --group=devs --serviceaccount=default:sa", None, True),
    ("deployment-zero", "create deployment zero --image=a --image=b --replicas=0", None, True),
    ("priorityclass-zero", "create priorityclass pz --value=0 --global-default --preemption-policy=Never --description=d", None, True),
    ("pdb-percent", "create poddisruptionbudget p2 --selector=app=web --max-unavailable=50%", None, True),
    ("quota-cpu", "create quota q2 --hard=cpu=1500m,memory=2Gi,requests.storage=10Gi --scopes=BestEffort", None, True),
    ("service-lb", "create service loadbalancer lb --tcp=443:https", None, True),
    ("secret-docker", "create secret docker-registry reg --docker-server=r.io --docker-username=u --docker-password=p", None, True),
    ("auth-can-i", "auth can-i get pods", None, False),
    ("token", "create token sa --duration=1h --audience=api", None, False),
    ("autoscale", "autoscale deployment web --min=2 --max=5 --cpu-percent=80", None, False),
]

RW = ["create", "delete", "get", "list", "patch", "update", "watch"]


def res(name, kind, namespaced, verbs=RW, **extra):
    d = {"name": name, "singularName": "", "namespaced": namespaced, "kind": kind, "verbs": verbs}
    d.update(extra)
    return d


GROUPS = [
    ("", "v1", [
        res("namespaces", "Namespace", False), res("configmaps", "ConfigMap", True),
        res("secrets", "Secret", True), res("services", "Service", True),
        res("serviceaccounts", "ServiceAccount", True),
        res("serviceaccounts/token", "TokenRequest", True, ["create"],
            group="authentication.k8s.io", version="v1"),
        res("resourcequotas", "ResourceQuota", True), res("pods", "Pod", True),
        res("nodes", "Node", False)]),
    ("apps", "v1", [
        res("deployments", "Deployment", True),
        res("deployments/scale", "Scale", True, ["get", "patch", "update"],
            group="autoscaling", version="v1")]),
    ("batch", "v1", [res("jobs", "Job", True), res("cronjobs", "CronJob", True)]),
    ("rbac.authorization.k8s.io", "v1", [
        res("roles", "Role", True), res("rolebindings", "RoleBinding", True),
        res("clusterroles", "ClusterRole", False),
        res("clusterrolebindings", "ClusterRoleBinding", False)]),
    ("scheduling.k8s.io", "v1", [res("priorityclasses", "PriorityClass", False)]),
    ("policy", "v1", [res("poddisruptionbudgets", "PodDisruptionBudget", True)]),
    ("networking.k8s.io", "v1", [res("ingresses", "Ingress", True)]),
    ("autoscaling", "v1", [res("horizontalpodautoscalers", "HorizontalPodAutoscaler", True)]),
    ("autoscaling", "v2", [res("horizontalpodautoscalers", "HorizontalPodAutoscaler", True)]),
    ("authorization.k8s.io", "v1", [
        res("selfsubjectaccessreviews", "SelfSubjectAccessReview", False, ["create"])]),
    ("authentication.k8s.io", "v1", [res("tokenreviews", "TokenReview", False, ["create"])]),
]


def discovery(path):
    if path == "/api":
        return {"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}
    if path == "/apis":
        groups = []
        for g, _, _ in GROUPS:
            if g and g not in [x["name"] for x in groups]:
                vs = [{"groupVersion": "%s/%s" % (g, v), "version": v} for gg, v, _ in GROUPS if gg == g]
                groups.append({"name": g, "versions": vs, "preferredVersion": vs[0]})
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
    for g, v, rs in GROUPS:
        gv = "%s/%s" % (g, v) if g else v
        if path == ("/apis/" + gv if g else "/api/" + v):
            return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": rs}
    return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    captured = []

    def log_message(self, fmt, *args):
        pass

    def reply(self, code, obj):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        path = self.path.split("?")[0]
        d = discovery(path)
        if d is not None:
            return self.reply(200, d)
        if path.endswith("/deployments/web"):
            return self.reply(200, {
                "kind": "Deployment", "apiVersion": "apps/v1",
                "metadata": {"name": "web", "namespace": "default", "uid": "u1", "resourceVersion": "1"},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                         "template": {"metadata": {"labels": {"app": "web"}},
                                      "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}}})
        self.reply(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                         "reason": "NotFound", "code": 404})

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        Handler.captured.append((self.path, self.headers.get("Content-Type"), body))
        path = self.path.split("?")[0]
        resource = path.rstrip("/").split("/")[-1]
        kinds = {r["name"].split("/")[-1]: (r["kind"], r.get("group", g), r.get("version", v))
                 for g, v, rs in GROUPS for r in rs}
        kind, g, v = kinds.get(resource, ("Unknown", "", "v1"))
        obj = {"kind": kind, "apiVersion": "%s/%s" % (g, v) if g else v,
               "metadata": {"name": "captured", "uid": "u", "resourceVersion": "2",
                            "creationTimestamp": "2024-01-02T03:04:05Z"}}
        if resource == "token":
            obj["status"] = {"token": "tok", "expirationTimestamp": "2030-01-01T00:00:00Z"}
        if resource == "selfsubjectaccessreviews":
            obj["status"] = {"allowed": True}
        self.reply(201, obj)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kubectl", default="kubectl")
    args = ap.parse_args()
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    port = srv.server_address[1]
    with tempfile.TemporaryDirectory() as cache:
        base = [args.kubectl, "--cache-dir", cache, "--server", "http://127.0.0.1:%d" % port,
                "-n", "default"]
        env = dict(os.environ, KUBECONFIG=os.devnull)
        for name, cmd, tail, dry in COMMANDS:
            argv = shlex.split(cmd)
            after = ["--"] + tail.split() if tail else []
            Handler.captured = []
            p = subprocess.run(base + argv + after, env=env, capture_output=True, text=True)
            posts = [c for c in Handler.captured if c[1] == "application/vnd.kubernetes.protobuf"]
            if p.returncode != 0 or not posts:
                print("FAILED %s: %s" % (name, p.stderr.strip()))
                continue
            with open(os.path.join(TESTDATA, name + ".pb"), "wb") as fh:
                fh.write(posts[-1][2])
            if dry:
                d = subprocess.run(base + argv + ["--dry-run=client", "-o", "json"] + after,
                                   env=env, capture_output=True, text=True, check=True)
                with open(os.path.join(TESTDATA, name + ".json"), "w") as fh:
                    fh.write(json.dumps(json.loads(d.stdout), indent=2) + "\n")
            print("captured %s (%d bytes)" % (name, len(posts[-1][2])))
    srv.shutdown()


if __name__ == "__main__":
    main()
