//! berth-engine: images, content store, layers, overlay rootfs, containers (runtime shim),
//! volumes, logs and state on disk. Filled in by the images and containers issues.
