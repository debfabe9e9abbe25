//! Parse speed of a large compose file (the shape `bench/gen_config.py` makes: 500 services that
//! share an anchor through `<<`). Only correctness is asserted; the time is printed, so run it
//! with `cargo test --release -p berth-compose --test parse_speed -- --nocapture` to read it.
//! `BERTH_PARSE_BENCH=path` times that file too.

use std::time::{Duration, Instant};

use berth_compose::yaml::{Value, parse_all};

/// The compose file `bench/gen_config.py N` writes as `compose.yaml`.
fn generate(n: usize) -> String {
    let mut s = String::from(
        "name: bench\n\nx-common: &common\n  image: ${IMAGE:-busybox:latest}\n  restart: unless-stopped\n  environment: &env\n    LOG_LEVEL: ${LOG_LEVEL:-info}\n    REGION: eu\n  labels:\n    com.example.tier: backend\n  healthcheck:\n    test: [\"CMD\", \"true\"]\n    interval: 30s\n    timeout: 5s\n\nservices:\n",
    );
    for i in 0..n {
        s.push_str(&format!(
            "  svc{i}:\n    <<: *common\n    command: [\"sleep\", \"{}\"]\n    ports:\n      - \"127.0.0.1:{}:80\"\n    volumes:\n      - data{}:/data\n      - ./conf:/conf:ro\n    networks: [front, back]\n",
            1000 + i,
            20000 + i,
            i % 50
        ));
        if i > 0 {
            s.push_str(&format!("    depends_on:\n      - svc{}\n", i - 1));
        }
    }
    s.push_str("\nnetworks:\n  front:\n  back:\n    internal: true\n\nvolumes:\n");
    for j in 0..50 {
        s.push_str(&format!("  data{j}:\n"));
    }
    s
}

/// The best of `runs` parses of `text`, and the documents of the last one.
fn time_parse(name: &str, text: &str, runs: usize) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..runs {
        let start = Instant::now();
        let docs = parse_all(name, text).expect("the benchmark file parses");
        best = best.min(start.elapsed());
        assert_eq!(docs.len(), 1);
    }
    best
}

#[test]
fn large_file_parses_correctly_and_is_timed() {
    let text = generate(500);
    let docs = parse_all("bench.yaml", &text).unwrap();
    assert_eq!(docs.len(), 1);
    let root = &docs[0];
    let services = root.get("services").unwrap().as_map().unwrap();
    assert_eq!(services.len(), 500);

    // Merged keys come after the explicit ones and keep the anchor's locations.
    let svc7 = services.get("svc7").unwrap();
    let keys: Vec<&str> = svc7.as_map().unwrap().keys().map(|k| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "command",
            "ports",
            "volumes",
            "networks",
            "depends_on",
            "image",
            "restart",
            "environment",
            "labels",
            "healthcheck"
        ]
    );
    let image = svc7.get("image").unwrap();
    assert_eq!(
        image.value,
        Value::String("${IMAGE:-busybox:latest}".into())
    );
    assert_eq!((image.loc.line, image.loc.col), (4, 10));
    let env = svc7.get("environment").unwrap();
    assert_eq!((env.loc.line, env.loc.col), (7, 5));
    // svc7 starts at line 17 + 11 * 7 - 1 (svc0 has no depends_on).
    let port = &svc7.get("ports").unwrap().as_seq().unwrap()[0];
    assert_eq!(port.value, Value::String("127.0.0.1:20007:80".into()));
    assert_eq!((port.loc.line, port.loc.col), (17 + 11 * 7 - 2 + 4, 9));
    assert_eq!(
        root.get("networks")
            .unwrap()
            .get("back")
            .unwrap()
            .get("internal")
            .unwrap()
            .value,
        Value::Bool(true)
    );
    assert_eq!(root.get("volumes").unwrap().as_map().unwrap().len(), 50);

    let best = time_parse("bench.yaml", &text, 10);
    println!(
        "parse_all of a {}-line compose file: best of 10 runs {:.2} ms",
        text.lines().count(),
        best.as_secs_f64() * 1000.0
    );

    if let Ok(path) = std::env::var("BERTH_PARSE_BENCH") {
        let text = std::fs::read_to_string(&path).unwrap();
        let best = time_parse(&path, &text, 10);
        println!(
            "parse_all of {path} ({} lines): best of 10 runs {:.2} ms",
            text.lines().count(),
            best.as_secs_f64() * 1000.0
        );
    }
}
