# A tiny stand-in for nixpkgs' stdenv.mkDerivation, enough for the demo jobset: no channels, no nixpkgs.
#
# Every derivation is built by /bin/sh with the build host's /usr/bin and /bin on PATH (the demo runs with the
# sandbox off), `deps` become a space-separated list of store paths in $deps, and `meta` stays out of the build
# environment (a set cannot be passed to a builder) but is visible to the evaluator, as with nixpkgs.
{ system }:

rec {
  prelude = ''
    set -eu
    log() { echo "[$pname] $*"; }
    mkdir -p "$out"
  '';

  mkDerivation = { pname, version, script, deps ? [ ], meta ? { }, ... }@args:
    let
      drv = derivation (removeAttrs args [ "meta" "script" ] // {
        name = "${pname}-${version}";
        inherit system pname version deps;
        builder = "/bin/sh";
        args = [ "-c" (prelude + script) ];
        PATH = "/usr/bin:/bin";
      });
    in
    drv // { inherit meta; };

  # A library: a quick build that "links" against its dependencies.
  mkLibrary = { pname, version, deps ? [ ], meta ? { }, extra ? "" }:
    mkDerivation {
      inherit pname version deps meta;
      script = ''
        log "configuring ${pname} ${version}"
        for d in $deps; do log "  found dependency $d"; done
        mkdir -p "$out/lib" "$out/include"
        log "compiling 12 objects"
        echo "${pname} ${version}" > "$out/lib/lib${pname}.so"
        for d in $deps; do echo "NEEDED $d" >> "$out/lib/lib${pname}.so"; done
        echo "/* ${pname} */" > "$out/include/${pname}.h"
        ${extra}
        log "done"
      '';
    };

  # A long build with steady log output: one line every half second for `seconds` seconds.
  mkSlow = { pname, version, seconds, deps ? [ ], meta ? { }, what ? "compiling", extra ? "" }:
    mkDerivation {
      inherit pname version deps meta;
      script = ''
        steps=${toString (seconds * 2)}
        log "${what} ${pname} ${version}: $steps units, about ${toString seconds} s"
        i=1
        while [ "$i" -le "$steps" ]; do
          log "${what} unit $i/$steps"
          sleep 0.5
          i=$((i + 1))
        done
        mkdir -p "$out/bin"
        echo "#!/bin/sh" > "$out/bin/${pname}"
        for d in $deps; do echo "# uses $d" >> "$out/bin/${pname}"; done
        ${extra}
        log "finished"
      '';
    };
}
