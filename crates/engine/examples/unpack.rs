//! Unpacks layer blobs into directories, as a pull does, and prints the time: the "unpack
//! alone" half of `bench/pull.sh`. `cargo run --release -p berth-engine --example unpack -- DEST BLOB...`

use std::io::BufReader;
use std::path::PathBuf;

use berth_engine::unpack::{UnpackOptions, unpack_layer};

fn main() {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [dest, blobs @ ..] = args.as_slice() else {
        eprintln!("usage: unpack DEST BLOB...");
        std::process::exit(2);
    };
    let start = std::time::Instant::now();
    std::thread::scope(|s| {
        for (i, blob) in blobs.iter().enumerate() {
            let dir = dest.join(i.to_string());
            s.spawn(move || {
                std::fs::create_dir_all(&dir).expect("dest dir");
                let f = std::fs::File::open(blob).expect("open blob");
                unpack_layer(
                    BufReader::with_capacity(1 << 20, f),
                    &dir,
                    &UnpackOptions::default(),
                )
                .expect("unpack");
            });
        }
    });
    println!("{:.3}", start.elapsed().as_secs_f64());
}
