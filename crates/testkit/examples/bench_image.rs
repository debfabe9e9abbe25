//! Builds an image from host directories (one gzip layer per directory, real files) and pushes
//! it to a registry: the image `bench/pull.sh` pulls. Run by hand:
//! `cargo run --release -p berth-testkit --example bench_image -- 127.0.0.1:5000 bench/usr:v1 /usr/lib/x86_64-linux-gnu /usr/share/locale …`

use berth_testkit::{Compression, Format, ImageBuilder, Layer};
use oci_client::secrets::RegistryAuth;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [host, name, dirs @ ..] = args.as_slice() else {
        eprintln!("usage: bench_image HOST NAME DIR...");
        std::process::exit(2);
    };
    let mut builder = ImageBuilder::new(Format::Oci).cmd(&["/bin/true"]);
    let (mut files, mut bytes) = (0u64, 0u64);
    for dir in dirs {
        let mut t = tar::Builder::new(Vec::new());
        t.follow_symlinks(false);
        let rel = dir.trim_start_matches('/');
        t.append_dir_all(rel, dir)
            .unwrap_or_else(|e| panic!("tar {dir}: {e}"));
        let tar = t.into_inner().expect("tar");
        let mut a = tar::Archive::new(&tar[..]);
        for e in a.entries().expect("entries") {
            let e = e.expect("entry");
            files += 1;
            bytes += e.header().size().unwrap_or(0);
        }
        builder = builder.layer(Layer::new(&tar, Compression::Gzip, Format::Oci));
    }
    let image = builder.build();
    let compressed: usize = image.layers.iter().map(|l| l.blob.len()).sum();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let digest = rt.block_on(berth_testkit::image::push_to(
        host,
        &RegistryAuth::Anonymous,
        name,
        &image,
    ));
    println!(
        "{host}/{name} {digest}: {} layers, {files} entries, {} MB unpacked, {} MB compressed",
        image.layers.len(),
        bytes / 1_000_000,
        compressed / 1_000_000
    );
}
