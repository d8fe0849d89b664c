//! The OpenAPI document against the real API: every documented route answers with a
//! documented status, and every mutating route refuses a request without the token.

use serde_json::{Value, json};

use crate::harness::Profile;

/// A plausible body for a documented request: the examples, or a string.
fn body_for(path: &str) -> Value {
    match path {
        "/api/v1/posts" => json!({"body": "from the API test"}),
        "/api/v1/follow" | "/api/v1/unfollow" => json!({"target": "nobody_known"}),
        "/api/v1/follow/many" => json!({"targets": ["nobody_known"]}),
        "/api/v1/register" => json!({}),
        _ => json!({}),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_answers_as_documented() {
    let alice = Profile::init("alice");
    let d = alice.up(&[]).await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();

    let doc = crate::harness::openapi(&d).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 12, "{:?}", paths.keys());

    let mut checked = 0;
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let documented: Vec<u16> = op["responses"]
                .as_object()
                .unwrap()
                .keys()
                .map(|k| k.parse().unwrap())
                .collect();
            let url = format!("{}{}", d.url(), path.replace("{seq}", "1"));
            let with_token = |r: reqwest::RequestBuilder| r.bearer_auth(d.token());
            let req = match method.as_str() {
                "get" => http.get(&url),
                "post" => http.post(&url).json(&body_for(path)),
                other => panic!("undocumented method {other}"),
            };
            let resp = with_token(req).send().await.unwrap();
            let status = resp.status().as_u16();
            assert!(
                documented.contains(&status),
                "{method} {path} answered {status}, documented {documented:?}"
            );
            if status != 200 && status != 201 {
                // Errors have the documented shape.
                let v: Value = resp.json().await.unwrap();
                assert!(
                    v["error"]["code"].is_string() && v["error"]["message"].is_string(),
                    "{v}"
                );
            } else if path.ends_with("/events") {
                assert_eq!(
                    resp.headers()["content-type"].to_str().unwrap(),
                    "text/event-stream"
                );
            } else if !resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json")
            {
                // Feeds and metrics: text of their own kind (their own tests read it).
                let documented = op["responses"]["200"]["content"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .next()
                    .unwrap()
                    .clone();
                let ctype = resp.headers()["content-type"].to_str().unwrap();
                assert!(
                    ctype.starts_with(&documented),
                    "{path}: {ctype} vs {documented}"
                );
            } else {
                let v: Value = resp.json().await.unwrap();
                assert!(v.is_object() || v.is_array());
            }
            // Without the token: refused (mutations above all).
            let bare = match method.as_str() {
                "get" => http.get(&url),
                _ => http.post(&url).json(&body_for(path)),
            };
            let status = bare.send().await.unwrap().status().as_u16();
            assert_eq!(
                status, 401,
                "{method} {path} without a token answered {status}"
            );
            assert!(
                documented.contains(&401),
                "{method} {path} does not document 401"
            );
            checked += 1;
        }
    }
    assert!(checked >= 12);
    // The post made above exists: the API really did what it said.
    let tl = d.get("/timeline").await.unwrap();
    assert_eq!(tl["posts"][0]["body"], "from the API test");
    // A cross-origin change with the session cookie is refused; the same origin works.
    let signed_in = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/login?token={}", d.url(), d.token()))
        .send()
        .await
        .unwrap();
    let set_cookie = signed_in.headers()["set-cookie"].to_str().unwrap();
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    let evil = http
        .post(format!("{}/api/v1/posts", d.url()))
        .header("Cookie", &cookie)
        .header("Origin", "http://evil.example")
        .json(&json!({"body": "csrf"}))
        .send()
        .await
        .unwrap();
    assert_eq!(evil.status(), 403);
    let own = http
        .post(format!("{}/api/v1/posts", d.url()))
        .header("Cookie", &cookie)
        .header("Origin", d.url())
        .json(&json!({"body": "same origin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), 201);
}

/// The document is OpenAPI 3.1 by a validator nobody here wrote, every response is
/// described, the constraints the server enforces are in it, and the answers of what
/// stands before the handlers (415 without a content type) are documented and given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_valid_openapi_3_1_and_states_the_constraints() {
    let alice = Profile::init("alice");
    let d = alice.up(&[]).await;
    let raw = crate::harness::openapi_raw(&d).await;
    let checked = crate::pytools::json(
        r#"
import json, sys
from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV31SpecValidator
doc = json.load(sys.stdin)
validate(doc, cls=OpenAPIV31SpecValidator)
print(json.dumps({"valid": doc["openapi"]}))
"#,
        &[],
        &raw,
    );
    assert!(checked["valid"].as_str().unwrap().starts_with("3.1"));

    let doc: Value = serde_json::from_slice(&raw).unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            for (status, r) in responses {
                assert!(
                    !r["description"].as_str().unwrap_or("").is_empty(),
                    "{method} {path} {status} has no description"
                );
            }
            for s in ["401", "403"] {
                assert!(responses.contains_key(s), "{method} {path} lacks {s}");
            }
            if op.get("requestBody").is_some() {
                for s in ["400", "413", "415", "422"] {
                    assert!(responses.contains_key(s), "{method} {path} lacks {s}");
                }
            }
        }
    }
    let limit = doc["paths"]["/api/v1/timeline"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "limit")
        .unwrap();
    assert_eq!(limit["schema"]["minimum"], 1, "{limit}");
    assert_eq!(limit["schema"]["maximum"], 500, "{limit}");
    let schemas = &doc["components"]["schemas"];
    assert_eq!(schemas["NewPost"]["properties"]["body"]["maxLength"], 280);
    assert_eq!(schemas["NewPost"]["properties"]["body"]["minLength"], 1);
    assert!(schemas["NewPost"]["properties"]["body"]["pattern"].is_string());
    assert!(schemas["Target"]["properties"]["target"]["pattern"].is_string());
    assert!(schemas["RegisterRequest"]["properties"]["handle"]["pattern"].is_string());

    // What the document says is what the server does: no content type is a 415 ...
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let no_type = http
        .post(format!("{}/api/v1/posts", d.url()))
        .bearer_auth(d.token())
        .body(r#"{"body": "typed?"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(no_type.status(), 415);
    let v: Value = no_type.json().await.unwrap();
    assert_eq!(v["error"]["code"], "unsupported_media_type", "{v}");
    // ... limit 501 a 400, 500 fine ...
    let (status, _) = crate::harness::get_raw(&d, "/timeline?limit=501").await;
    assert_eq!(status, 400);
    let (status, _) = crate::harness::get_raw(&d, "/timeline?limit=500").await;
    assert_eq!(status, 200);
    // ... a target with spaces around it, or two @, is not a target ...
    for bad in [" alice", "@@alice"] {
        let (status, v) = crate::harness::post_raw(&d, "/follow", &json!({"target": bad})).await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (422, Some("bad_target"))
        );
    }
    // ... and the scheme's name is case-insensitive (RFC 9110).
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let r = http
            .get(format!("{}/api/v1/whoami", d.url()))
            .header("Authorization", format!("{scheme} {}", d.token()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "scheme {scheme}");
    }
    let r = http
        .get(format!("{}/api/v1/whoami", d.url()))
        .header("Authorization", format!("Basic {}", d.token()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

/// Schemathesis' command line. Its generator describes each filter it builds by
/// parsing the filter's source with `ast`, which in CPython 3.11 (Debian 12's) can
/// fail deep in a generator stack ("AST constructor recursion depth mismatch", a
/// SystemError) and abort an operation's tests; a plain name describes it as well.
const SCHEMATHESIS: &str = r#"
import sys
from hypothesis.internal import reflection
from schemathesis.cli import schemathesis
describe = reflection.get_pretty_function_description
def plainly(f):
    try:
        return describe(f)
    except SystemError:
        return getattr(f, "__name__", "<filter>")
for module in list(sys.modules.values()):
    if getattr(module, "get_pretty_function_description", None) is describe:
        module.get_pretty_function_description = plainly
sys.argv[0] = "schemathesis"
sys.exit(schemathesis())
"#;

/// A schema-driven property-based fuzzer (Schemathesis) against the daemon: every
/// operation, with inputs valid and invalid by the document, every check it has
/// (no 5xx, every status and content type documented, every body matching its
/// schema, invalid input refused, the token enforced) but that every valid input
/// succeeds (a valid handle may be unknown: 404). The event stream never ends, so
/// it is left out. `STARLING_FUZZ_EXAMPLES` sets the cases per operation and
/// `STARLING_FUZZ_SEED` the seed (1 in the suite).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_driven_fuzzer_finds_no_mismatch_and_no_server_error() {
    // A small network, so that handle lookups and claims get answers (a node alone,
    // or offline, rightly answers 503 to them).
    let alice = Profile::init("alice");
    let d = alice.up(&[]).await;
    let boot = crate::harness::addr(&d).await;
    let peers: Vec<Profile> = ["bob", "carol", "dave"].map(Profile::init).into();
    let mut daemons = Vec::new();
    for p in &peers {
        daemons.push(p.up(&["--bootstrap", &boot]).await);
    }
    crate::harness::wait_registered(&d).await;
    let examples = std::env::var("STARLING_FUZZ_EXAMPLES").unwrap_or_else(|_| "40".into());
    // One seed in the suite, so that a run fails only for a change; others explore
    // (STARLING_FUZZ_SEED=<n>).
    let seed = std::env::var("STARLING_FUZZ_SEED").unwrap_or_else(|_| "1".into());
    eprintln!("fuzzing with seed {seed} (STARLING_FUZZ_SEED sets another)");
    let report = tempfile::tempdir().unwrap();
    // A body over the server's 16 KiB limit is refused (413) before it is read,
    // whatever it holds: for invalid data, a rejection like the others.
    std::fs::write(
        report.path().join("schemathesis.toml"),
        "[checks.negative_data_rejection]\n\
         expected-statuses = [\"400\", \"401\", \"403\", \"404\", \"405\", \"406\", \"409\", \"413\", \"415\", \"422\", \"428\", \"429\", \"5xx\"]\n",
    )
    .unwrap();
    let out = tokio::process::Command::new(crate::pytools::python())
        .current_dir(report.path())
        .args([
            "-c",
            SCHEMATHESIS,
            "run",
            &format!("{}/api/openapi.json", d.url()),
            "--header",
            &format!("Authorization: Bearer {}", d.token()),
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
            "--exclude-path",
            "/api/v1/events",
            "--max-examples",
            &examples,
            "--seed",
            &seed,
            "--workers",
            "2",
            "--request-timeout",
            "20",
            "--no-color",
        ])
        .kill_on_drop(true)
        .output()
        .await
        .expect("run schemathesis");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "schemathesis found problems:\n{text}");
    let summary: Vec<&str> = text.lines().rev().take(40).collect();
    eprintln!(
        "{}",
        summary.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
    // It really ran the operations (not, say, zero of them).
    assert!(
        text.contains("/api/v1/posts") || text.contains("passed"),
        "{text}"
    );
    // The node is still well.
    let (status, _) = crate::harness::get_raw(&d, "/status").await;
    assert_eq!(status, 200);
}
