#!/usr/bin/env node
// Validates Kubernetes manifests (the output of kubectl kustomize, one or
// more YAML streams) offline against the UPSTREAM schemas, as a second
// opinion next to validate.py's hand-written ones: every object goes
// through the validate() of its model class from the npm packages pinned in
// package.json (installed by deploy/install-deps.sh into node_modules here):
//   kubernetes-models                      the Kubernetes OpenAPI (core, apps,
//                                          batch, policy, autoscaling,
//                                          networking.k8s.io, ...)
//   @kubernetes-models/keda                keda.sh/v1alpha1 (ScaledObject)
//   @kubernetes-models/prometheus-operator monitoring.coreos.com/v1
//                                          (ServiceMonitor)
// An object whose apiVersion/kind has no model class is an error, so that a
// new kind is looked at. The upstream schemas are not strict: an unknown or
// misspelt field passes here (validate.py catches it).
//
// usage: validate.js FILE... (- for standard input); exit 0 when every
// object is valid, 1 with a line per problem (file: Kind/name: path: what)
// and the summary last.
"use strict";
const fs = require("fs");
const path = require("path");

let YAML;
try {
    YAML = require("yaml");
    require("kubernetes-models/package.json");
} catch (e) {
    console.log(`validate.js: ${e.message.split("\n")[0]}: run deploy/install-deps.sh ` +
        `(npm ci --prefix ${path.relative(process.cwd(), __dirname) || "."})`);
    process.exit(1);
}

// the API groups outside the Kubernetes OpenAPI: group -> package
const CRD_PACKAGES = {
    "keda.sh": "@kubernetes-models/keda",
    "monitoring.coreos.com": "@kubernetes-models/prometheus-operator",
};

// the model class of apiVersion/kind, or a string saying why there is none
const modules = new Map();
function modelOf(apiVersion, kind) {
    if (typeof apiVersion !== "string" || !/^([a-z0-9.-]+\/)?v[0-9a-z]+$/.test(apiVersion)) {
        return `no apiVersion (${JSON.stringify(apiVersion)})`;
    }
    if (typeof kind !== "string" || !/^[A-Z][A-Za-z0-9]*$/.test(kind)) {
        return `no kind (${JSON.stringify(kind)})`;
    }
    const group = apiVersion.includes("/") ? apiVersion.split("/")[0] : "";
    // a group with a dot and no package of its own is not in kubernetes-models
    // unless it is one of Kubernetes' (*.k8s.io)
    let pkg = CRD_PACKAGES[group];
    if (!pkg) {
        if (group.includes(".") && !group.endsWith(".k8s.io")) {
            return `no model for ${apiVersion} ${kind} (API group ${group} is in none of ` +
                `kubernetes-models, ${Object.values(CRD_PACKAGES).join(", ")})`;
        }
        pkg = "kubernetes-models";
    }
    const id = `${pkg}/${apiVersion}`;
    if (!modules.has(id)) {
        let mod = null;
        try {
            mod = require(id);
        } catch (e) {
            if (e.code !== "MODULE_NOT_FOUND") throw e;
        }
        modules.set(id, mod);
    }
    const mod = modules.get(id);
    const cls = mod && mod[kind];
    if (typeof cls !== "function" || cls.apiVersion !== apiVersion || cls.kind !== kind ||
        typeof cls.prototype.validate !== "function") {
        return `no model for ${apiVersion} ${kind} in ${pkg}`;
    }
    return cls;
}

function versionOf(pkg) {
    return require(`${pkg}/package.json`).version;
}

function main(paths) {
    let count = 0;
    let problems = 0;
    const problem = (line) => {
        console.log(line);
        problems++;
    };
    for (const file of paths) {
        let text;
        try {
            text = fs.readFileSync(file === "-" ? 0 : file, "utf8");
        } catch (e) {
            problem(`${file}: ${e.message}`);
            continue;
        }
        // YAML 1.1, as Kubernetes reads it (sigs.k8s.io/yaml: yes/no/on/off
        // are booleans, 0755 is octal)
        const docs = YAML.parseAllDocuments(text, { version: "1.1" });
        const list = Array.isArray(docs) ? docs : [docs];
        list.forEach((doc, i) => {
            if (doc.errors && doc.errors.length) {
                for (const err of doc.errors) {
                    const what = err.message.split("\n")[0].replace(/:$/, "");
                    problem(`${file}: document ${i + 1}: YAML: ${what}`);
                }
                return;
            }
            const obj = doc.toJS({ maxAliasCount: 100 });
            if (obj === null || obj === undefined) return; // an empty document
            count++;
            const isObj = typeof obj === "object" && !Array.isArray(obj);
            const kind = isObj && obj.kind ? obj.kind : "?";
            const name = isObj && obj.metadata && obj.metadata.name ? obj.metadata.name : "?";
            const where = `${file}: ${kind}/${name}`;
            if (!isObj) {
                problem(`${where}: (top): not an object`);
                return;
            }
            const cls = modelOf(obj.apiVersion, obj.kind);
            if (typeof cls === "string") {
                problem(`${where}: ${cls}`);
                return;
            }
            try {
                new cls(obj).validate();
            } catch (e) {
                const errs = Array.isArray(e.errors) ? e.errors : null;
                if (!errs) {
                    problem(`${where}: ${e.message}`);
                    return;
                }
                for (const err of errs) {
                    let field = (err.instancePath || "").replace(/^\//, "") || "(top)";
                    if (err.keyword === "required" && err.params && err.params.missingProperty) {
                        field = field === "(top)" ? err.params.missingProperty
                            : `${field}/${err.params.missingProperty}`;
                    }
                    problem(`${where}: ${field}: ${err.message}`);
                }
            }
        });
    }
    if (count === 0) {
        console.log("validate.js: no objects to validate");
        return 1;
    }
    const versions = ["kubernetes-models", ...Object.values(CRD_PACKAGES)]
        .map((p) => `${p}@${versionOf(p)}`).join(", ");
    console.log(`validate.js: ${count} objects, ${problems} problems (upstream: ${versions})`);
    return problems ? 1 : 0;
}

process.exitCode = main(process.argv.length > 2 ? process.argv.slice(2) : ["-"]);
