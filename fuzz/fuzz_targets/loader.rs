//! The whole compose loader on arbitrary input: it must return Ok or an error, never panic,
//! never hang. Run: `mkdir -p fuzz/corpus && RUSTC_BOOTSTRAP=1 cargo fuzz run loader fuzz/corpus fuzz/seeds -- -max_total_time=600`
//! (new inputs go to the first directory, fuzz/corpus, which git ignores).
#![no_main]

use berth_compose::loader::{self, ConfigFile, LoadOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = ConfigFile {
        name: "compose.yaml".to_string(),
        path: Some("/nonexistent-berth-fuzz/compose.yaml".into()),
        content: text.to_string(),
    };
    let mut env = loader::Environment::new();
    env.insert("FOO".to_string(), "bar".to_string());
    let opts = LoadOptions::new(vec![file], "/nonexistent-berth-fuzz".into(), env);
    let _ = loader::load(&opts);
});
