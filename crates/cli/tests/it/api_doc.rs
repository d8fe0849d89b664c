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

    let doc: Value = http
        .get(format!("{}/api/openapi.json", d.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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
