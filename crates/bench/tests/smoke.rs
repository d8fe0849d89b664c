//! CI's smoke run of the harness: the quick profile must run every scenario and its
//! counts must add up. No duration is asserted here: benchmarks are not tests.

use serde_json::Value;

#[test]
fn quick_profile_runs_every_scenario_with_consistent_counts() {
    let out = tempfile::tempdir().unwrap();
    let doc = out.path().join("BENCH.md");
    std::fs::write(&doc, "# Benchmarks\n\nintro\n\n<!-- BEGIN GENERATED: starling-bench writes this part -->\nold\n<!-- END GENERATED -->\n\ntrailer\n").unwrap();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_starling-bench"))
        .arg("--quick")
        .arg("--out")
        .arg(out.path())
        .arg("--update-doc")
        .arg(&doc)
        .env("RUST_LOG", "error")
        .status()
        .expect("run starling-bench");
    assert!(status.success(), "starling-bench --quick failed: {status}");

    let report: Value =
        serde_json::from_slice(&std::fs::read(out.path().join("results.json")).unwrap()).unwrap();
    let ids: Vec<&str> = report["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "propagation",
            "catchup",
            "churn",
            "ingest",
            "timeline",
            "memory",
            "dht",
            "attack"
        ]
    );
    let scenario = |id: &str| -> Value {
        report["scenarios"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .unwrap()["data"]
            .clone()
    };

    // Propagation: every post reached every follower, in both setups.
    let prop = scenario("propagation");
    // In one process, as processes, and over emulated links (namespaces behind a
    // switch that delays every frame 50 ms and drops 1%).
    assert_eq!(prop.as_array().unwrap().len(), 3);
    let linked = prop
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["setup"].as_str().unwrap().starts_with("emulated links"))
        .expect("a run over emulated links");
    // Nothing crosses a 50 ms link in less: the switch really holds the frames.
    assert!(
        linked["latency_ms"]["p50"].as_f64().unwrap() >= 50.0,
        "{linked}"
    );
    for run in prop.as_array().unwrap() {
        assert_eq!(run["delivered"], run["expected"], "{run}");
        assert_eq!(run["latency_ms"]["n"], run["expected"]);
        // The nodes' stage stamps cover every delivery (author and followers joined
        // on one monotonic clock), and the costs were measured.
        let m = &run["measures"];
        assert_eq!(m["breakdown"]["deliveries"], run["expected"], "{run}");
        assert_eq!(m["breakdown"]["steps"].as_array().unwrap().len(), 7);
        // Posts arrive by push (one lost in flight may come by catch-up instead).
        let copies = m["copies_per_delivery"].as_f64().unwrap_or(0.0);
        assert!(
            copies > 0.5,
            "posts were pushed and their copies counted: {run}"
        );
        assert!(m["cpu_s"].as_f64().unwrap() > 0.0, "{run}");
        assert!(m["open_files_mean"].as_f64().unwrap() > 0.0, "{run}");
        assert!(
            m["fsyncs"].as_u64().unwrap() >= run["posts"].as_u64().unwrap(),
            "the author's posts are flushed: {run}"
        );
    }
    // Under attack: every post still reached every follower, and the flood reached
    // the nodes (they refused forged posts).
    let attack = scenario("attack");
    let expected = attack["followers"].as_u64().unwrap() * attack["posts"].as_u64().unwrap();
    for run in ["quiet", "attack"] {
        assert_eq!(attack[run]["delivered"], expected, "{run}: {attack}");
    }
    assert!(
        attack["attack"]["flood"]["sent"]["forged_posts"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(
        attack["attack"]["fate"]["rejected_bad_signature"]
            .as_u64()
            .unwrap()
            > 0,
        "{attack}"
    );
    // Catch-up: all missed posts arrived, from both sources.
    let c = scenario("catchup");
    assert_eq!(c["from_author"]["posts"], c["missed_posts"]);
    assert_eq!(c["from_followers"]["posts"], c["missed_posts"]);
    // Churn: both phases ran, fractions are fractions; the follows were timed.
    let churn = scenario("churn");
    for phase in ["pareto", "fixed_offline"] {
        for w in ["5 s", "60 s"] {
            for f in churn[phase][w]["fractions"].as_array().unwrap() {
                let f = f.as_f64().unwrap();
                assert!((0.0..=1.0).contains(&f));
            }
        }
        assert!(
            churn[phase]["sessions_started"].as_u64().unwrap() > 0,
            "{churn}"
        );
    }
    let offline = churn["fixed_offline"]["offline_mean"].as_f64().unwrap();
    assert!((0.2..=0.4).contains(&offline), "{offline}");
    assert!(churn["posts"].as_u64().unwrap() > 0);
    assert!(churn["follow_statements"].as_u64().unwrap() > 0);
    assert!(churn["follows_acknowledged_secs"].as_f64().unwrap() > 0.0);
    // Ingest and timeline: everything stored was counted.
    let ingest = scenario("ingest");
    assert_eq!(ingest["stored"], ingest["posts"]);
    let tl = scenario("timeline");
    assert_eq!(tl["stored"], 10_000);
    assert!(tl["latest"]["n"].as_u64().unwrap() > 0);
    // Memory: real readings.
    let mem = scenario("memory");
    let idle = mem["process_idle"].as_array().unwrap();
    assert!(!idle.is_empty());
    assert!(idle.iter().all(|m| m["rss_kib"].as_u64().unwrap() > 0));
    // DHT: with everyone up, every lookup finds the right key.
    let dht = scenario("dht");
    let all_up = &dht[0];
    assert_eq!(all_up["dead"], 0);
    assert_eq!(all_up["resolved"], all_up["tried"]);

    // Plots and the report exist; the document's generated part was replaced.
    for f in ["propagation.svg", "timeline.svg", "dht.svg", "report.md"] {
        let text = std::fs::read_to_string(out.path().join(f)).unwrap();
        assert!(!text.is_empty(), "{f}");
    }
    let doc = std::fs::read_to_string(&doc).unwrap();
    assert!(doc.starts_with("# Benchmarks\n\nintro\n"));
    assert!(doc.trim_end().ends_with("trailer"));
    assert!(!doc.contains("\nold\n"));
    assert!(doc.contains("### 1. Propagation"));
}
