//! A compose project for the end-to-end tests: a directory with a `compose.yaml` and a
//! [`NetEnv`] (its own state root and network namespace); on drop, `down -v` and a check that
//! no container or network is left.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Output;

use super::IMAGE;
use super::net::NetEnv;

/// A project directory with a compose file, driven through one NetEnv.
pub struct Compose {
    pub e: NetEnv,
    pub dir: PathBuf,
    pub name: String,
}

impl Compose {
    pub fn new(tag: &str, yaml: &str) -> Compose {
        let e = NetEnv::new(tag);
        let dir = e.env.tmp.path().join("project");
        std::fs::create_dir_all(&dir).unwrap();
        let c = Compose {
            e,
            dir,
            name: format!("p{tag}"),
        };
        c.write(yaml);
        c
    }

    pub fn write(&self, yaml: &str) {
        std::fs::write(self.dir.join("compose.yaml"), yaml.replace("IMAGE", IMAGE)).unwrap();
    }

    pub fn args<'a>(&'a self, verb: &[&'a str]) -> Vec<&'a str> {
        let mut a = vec![
            "--project-directory",
            self.dir.to_str().unwrap(),
            "-p",
            self.name.as_str(),
        ];
        a.extend_from_slice(verb);
        a
    }

    pub fn run(&self, verb: &[&str]) -> Output {
        self.e.env.run(&self.args(verb))
    }

    pub fn ok(&self, verb: &[&str]) -> (String, String) {
        let out = self.run(verb);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "berth {verb:?} failed ({:?}):\n{}{stderr}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout)
        );
        (String::from_utf8(out.stdout).unwrap(), stderr)
    }

    /// `ps -a --format json`, one value per container.
    pub fn ps(&self) -> Vec<serde_json::Value> {
        self.ok(&["ps", "-a", "--format", "json"])
            .0
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    pub fn ids(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .ps()
            .iter()
            .map(|c| {
                (
                    c["Name"].as_str().unwrap().to_string(),
                    c["ID"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        v.sort();
        v
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let out = self.run(&["down", "-v", "--remove-orphans", "-t", "1"]);
            assert!(
                out.status.success(),
                "down: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(
                self.e.ok(&["container", "ls", "-a", "-q"]),
                "",
                "down left containers"
            );
            assert_eq!(
                self.e.ok(&["network", "ls", "-q"]),
                "",
                "down left networks"
            );
        }
    }
}
