# The hydra-ops demo jobset: a small but realistic project — a handful of base libraries, a runtime, a server,
# a command-line tool, tests, documentation and release artefacts — built from /bin/sh derivations only.
#
#   quick builds        most libraries and tools finish in well under a second
#   slow builds         core-runtime, tests.integration and benchmarks log a line every 0.5 s for
#                       slowSeconds, slowSeconds and 2 × slowSeconds seconds
#   a failure           legacy-compat fails its test suite (and tests.legacy, which needs it, cannot be built)
#   non-determinism     build-info writes the time and random bytes: a rebuild never reproduces it
#   a missing feature   ml-inference needs the system feature gpu-a100, which no machine has
#   products, metrics   docs and release-tarball write nix-support/hydra-build-products and hydra-metrics
#   a function of system  sdk is `{ system }: …`, called by the evaluator
#
# Inputs: system (default: the evaluating machine's), slowSeconds (a whole number, default 30; given as a
# string input by Hydra-style evaluators).
{ system ? builtins.currentSystem, slowSeconds ? 30 }:

let
  secs =
    let v = if builtins.isString slowSeconds then builtins.fromJSON slowSeconds else slowSeconds; in
    assert builtins.isInt v && v >= 0; v;

  inherit (import ./lib.nix { inherit system; }) mkDerivation mkLibrary mkSlow;

  mit = { shortName = "mit"; fullName = "MIT License"; };
  asl20 = { shortName = "asl20"; fullName = "Apache License 2.0"; };
  bsd3 = { shortName = "bsd3"; fullName = "BSD 3-Clause License"; };
  alice = { name = "Alice Example"; email = "alice@example.org"; };
  bob = { name = "Bob Example"; email = "bob@example.org"; };
  meta = description: extra: { inherit description; license = mit; maintainers = [ alice ]; homepage = "https://example.org/demo"; } // extra;

  # Base libraries.
  zlib-lite = mkLibrary { pname = "zlib-lite"; version = "1.3.1"; meta = meta "Compression library (demo)" { license = "zlib"; }; };
  openssl-lite = mkLibrary { pname = "openssl-lite"; version = "3.0.14"; meta = meta "TLS and crypto library (demo)" { license = asl20; maintainers = [ alice bob ]; }; };
  libyaml = mkLibrary { pname = "libyaml"; version = "0.2.5"; meta = meta "YAML parser" { }; };
  libffi-mini = mkLibrary { pname = "libffi-mini"; version = "3.4.6"; meta = meta "Foreign function interface" { }; };
  pcre-tiny = mkLibrary { pname = "pcre-tiny"; version = "10.43"; meta = meta "Regular expressions" { license = bsd3; }; };
  sqlite-mini = mkLibrary { pname = "sqlite-mini"; version = "3.46.0"; meta = meta "Embedded SQL database" { license = "publicDomain"; }; };
  expat-mini = mkLibrary { pname = "expat-mini"; version = "2.6.2"; meta = meta "XML parser" { }; };

  # Second layer.
  libfoo = mkDerivation {
    pname = "libfoo"; version = "2.1.0"; deps = [ zlib-lite ];
    outputs = [ "out" "dev" ];
    meta = meta "The foo library, with headers in a separate output" { license = [ mit bsd3 ]; };
    script = ''
      log "building libfoo against $deps"
      mkdir -p "$out/lib" "$dev/include"
      echo "libfoo 2.1.0" > "$out/lib/libfoo.so"
      echo "/* foo.h */" > "$dev/include/foo.h"
    '';
  };
  libbar = mkLibrary { pname = "libbar"; version = "0.9.3"; deps = [ libfoo openssl-lite ]; meta = meta "The bar library" { }; };
  http-parser = mkLibrary { pname = "http-parser"; version = "2.9.4"; deps = [ pcre-tiny ]; meta = meta "HTTP/1.1 parser" { }; };
  json-c = mkLibrary { pname = "json-c"; version = "0.17"; deps = [ libyaml ]; meta = meta "JSON library" { }; };
  libevent-lite = mkLibrary { pname = "libevent-lite"; version = "2.1.12"; deps = [ openssl-lite ]; meta = meta "Event notification library" { license = bsd3; }; };
  libxml-lite = mkLibrary { pname = "libxml-lite"; version = "2.12.7"; deps = [ expat-mini zlib-lite ]; meta = meta "XML toolkit" { }; };

  # Third layer.
  core-runtime = mkSlow {
    pname = "core-runtime"; version = "4.0.0"; seconds = secs; deps = [ libfoo libbar libffi-mini ];
    meta = meta "Language runtime: the long compile everything waits for" { maxSilent = 600; timeout = 7200; schedulingPriority = 150; };
  };
  db-driver = mkLibrary { pname = "db-driver"; version = "1.8.2"; deps = [ sqlite-mini libbar ]; meta = meta "Database driver" { }; };
  net-stack = mkLibrary { pname = "net-stack"; version = "0.14.1"; deps = [ libevent-lite http-parser openssl-lite ]; meta = meta "Networking stack" { }; };
  config-parser = mkLibrary { pname = "config-parser"; version = "1.2.0"; deps = [ json-c libyaml ]; meta = meta "Configuration file parser" { }; };

  # Applications.
  app-server = mkLibrary { pname = "app-server"; version = "1.4.2"; deps = [ core-runtime net-stack db-driver config-parser ]; meta = meta "The application server" { maintainers = [ alice bob ]; schedulingPriority = 150; }; };
  cli-tool = mkLibrary { pname = "cli-tool"; version = "1.4.2"; deps = [ core-runtime json-c ]; meta = meta "Command-line client" { }; };
  worker = mkLibrary { pname = "worker"; version = "1.4.2"; deps = [ core-runtime db-driver ]; meta = meta "Background job worker" { }; };

  legacy-compat = mkDerivation {
    pname = "legacy-compat"; version = "0.3.1"; deps = [ libxml-lite libfoo ];
    meta = meta "Compatibility shims for the 0.x file format (its test suite fails)" { maintainers = [ bob ]; };
    script = ''
      log "building legacy-compat"
      log "running test suite (57 tests)"
      i=1
      while [ "$i" -le 56 ]; do echo "PASS: test_$i"; i=$((i + 1)); done
      echo "FAIL: test_parse_legacy_header: expected 3 fields, got 2"
      echo "error: legacy-compat: 1 of 57 tests failed" >&2
      exit 1
    '';
  };

  ml-inference = mkDerivation {
    pname = "ml-inference"; version = "0.5.0"; deps = [ core-runtime ];
    requiredSystemFeatures = [ "gpu-a100" ];
    meta = meta "Model inference kernels (needs a machine with the gpu-a100 feature)" { license = asl20; };
    script = ''
      log "running CUDA kernels"
      echo "kernels" > "$out/kernels.bin"
    '';
  };

  build-info = mkDerivation {
    pname = "build-info"; version = "1.4.2"; deps = [ app-server ];
    meta = meta "Build stamp: the time and random bytes, never reproducible" { };
    script = ''
      log "stamping build"
      date +%s%N > "$out/stamp"
      od -An -N16 -tx1 /dev/urandom >> "$out/stamp"
    '';
  };

  docs = mkDerivation {
    pname = "docs"; version = "1.4.2"; deps = [ app-server cli-tool ];
    meta = meta "HTML manual" { };
    script = ''
      log "rendering 24 pages"
      mkdir -p "$out/share/doc/app-server" "$out/nix-support"
      echo "<html><body><h1>app-server 1.4.2</h1></body></html>" > "$out/share/doc/app-server/index.html"
      echo "doc manual $out/share/doc/app-server index.html" > "$out/nix-support/hydra-build-products"
    '';
  };

  tests = {
    unit = mkLibrary { pname = "tests-unit"; version = "1.4.2"; deps = [ cli-tool worker ]; meta = meta "Unit tests" { schedulingPriority = 120; }; extra = ''log "412 tests passed"''; };
    integration = mkSlow {
      pname = "tests-integration"; version = "1.4.2"; seconds = secs; deps = [ app-server worker ]; what = "running scenario";
      meta = meta "Integration tests against a live app-server" { maxSilent = 300; };
    };
    legacy = mkLibrary { pname = "tests-legacy"; version = "1.4.2"; deps = [ legacy-compat ]; meta = meta "Tests of the legacy format (depends on the failing legacy-compat)" { }; };
  };

  benchmarks = mkSlow {
    pname = "benchmarks"; version = "1.4.2"; seconds = secs * 2; deps = [ app-server ]; what = "benchmark round";
    meta = meta "Throughput benchmarks" { timeout = 900; schedulingPriority = 50; };
    extra = ''
      mkdir -p "$out/nix-support"
      echo "requests.per-second 18234.5 req/s" > "$out/nix-support/hydra-metrics"
      echo "latency.p99 12.7 ms" >> "$out/nix-support/hydra-metrics"
    '';
  };

  plugins = {
    auth = mkLibrary { pname = "plugin-auth"; version = "0.8.0"; deps = [ app-server openssl-lite ]; meta = meta "Authentication plugin" { }; };
    metrics-exporter = mkLibrary { pname = "plugin-metrics-exporter"; version = "0.3.0"; deps = [ app-server ]; meta = meta "Prometheus exporter plugin" { }; };
    rate-limit = mkLibrary { pname = "plugin-rate-limit"; version = "0.2.1"; deps = [ app-server ]; meta = meta "Rate limiting plugin" { }; };
  };

  release-tarball = mkDerivation {
    pname = "app-server-release"; version = "1.4.2"; deps = [ app-server cli-tool worker docs ];
    meta = meta "Release tarball with the server, the client, the worker and the manual" { schedulingPriority = 200; };
    script = ''
      log "packing release"
      mkdir -p "$out/nix-support"
      for d in $deps; do echo "== $d"; ls -R "$d"; done > "$out/app-server-1.4.2.tar"
      echo "file binary-dist $out/app-server-1.4.2.tar" > "$out/nix-support/hydra-build-products"
      echo "tarball.size $(wc -c < "$out/app-server-1.4.2.tar") bytes" > "$out/nix-support/hydra-metrics"
      echo "tarball.files $(grep -c . "$out/app-server-1.4.2.tar")" >> "$out/nix-support/hydra-metrics"
    '';
  };

  installer = mkLibrary { pname = "installer"; version = "1.4.2"; deps = [ release-tarball ]; meta = meta "Self-extracting installer" { }; };
  container-image = mkLibrary { pname = "container-image"; version = "1.4.2"; deps = [ release-tarball ]; meta = meta "OCI image layers" { license = asl20; }; };
in
{
  inherit zlib-lite openssl-lite libyaml libffi-mini pcre-tiny sqlite-mini expat-mini;
  inherit libfoo libbar http-parser json-c libevent-lite libxml-lite;
  inherit core-runtime db-driver net-stack config-parser;
  inherit app-server cli-tool worker legacy-compat ml-inference build-info docs;
  inherit tests benchmarks plugins release-tarball installer container-image;

  # A job that is a function of the system, as in Hydra's manual.
  sdk = { system }: mkLibrary { pname = "sdk"; version = "1.4.2"; deps = [ cli-tool libfoo ]; meta = meta "Developer kit for ${system}" { }; };
}
