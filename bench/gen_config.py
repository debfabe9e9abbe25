#!/usr/bin/env python3
"""Generates a large compose project for `bench/config.sh`: N services sharing anchors with merge
keys, plus three override files. Deterministic: the same N gives the same files."""
import os
import sys

n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
out = sys.argv[2] if len(sys.argv) > 2 else "bench-config"
os.makedirs(out, exist_ok=True)

# `version` instead of `name`: docker-compose 1.29 (Debian) reads only versioned files.
base = ['version: "3.8"', "", "x-common: &common",
        "  image: ${IMAGE:-busybox:latest}",
        "  restart: unless-stopped",
        "  environment: &env",
        "    LOG_LEVEL: ${LOG_LEVEL:-info}",
        "    REGION: eu",
        "  labels:",
        "    com.example.tier: backend",
        "  healthcheck:",
        "    test: [\"CMD\", \"true\"]",
        "    interval: 30s",
        "    timeout: 5s",
        "", "services:"]
for i in range(n):
    base += [f"  svc{i}:",
             "    <<: *common",
             f"    command: [\"sleep\", \"{1000 + i}\"]",
             "    ports:",
             f"      - \"127.0.0.1:{20000 + i}:80\"",
             "    volumes:",
             f"      - data{i % 50}:/data",
             "      - ./conf:/conf:ro",
             "    networks: [front, back]"]
    if i > 0:
        base += ["    depends_on:", f"      - svc{i - 1}"]
base += ["", "networks:", "  front:", "  back:", "    internal: true", "", "volumes:"]
base += [f"  data{j}:" for j in range(50)]
open(os.path.join(out, "compose.yaml"), "w").write("\n".join(base) + "\n")

for k in range(3):
    lines = ["services:"]
    for i in range(k, n, 3):
        lines += [f"  svc{i}:", "    environment:", f"      OVERRIDE_{k}: \"{i}\"",
                  "    labels:", f"      - com.example.override={k}"]
    open(os.path.join(out, f"override{k}.yaml"), "w").write("\n".join(lines) + "\n")
os.makedirs(os.path.join(out, "conf"), exist_ok=True)
print(out)
