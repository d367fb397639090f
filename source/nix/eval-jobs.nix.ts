// The Nix expression hydra-ops evaluates a jobset with (`nix-instantiate --eval --strict --json
// --read-write-mode`, given `--argstr spec <json>`). It follows what Hydra's evaluator does with a release
// expression:
//
// - the file is imported; a function is called with the jobset inputs it declares (string inputs as strings,
//   boolean inputs as booleans, path inputs as path values); `system` is builtins.currentSystem when the
//   function declares it without a default and no input is named `system`;
// - an attribute set that is a derivation (`type = "derivation"`) is a job; any other attribute set is walked
//   into (whether or not it sets recurseForDerivations — that attribute itself is skipped); a function met on
//   the way is called with the inputs in the same way (jobs that are functions of `system`); null is skipped;
//   anything else is an error for that attribute; names containing a space are skipped, as Hydra does;
// - for each job: drvPath (forcing it writes the .drv file to the store), name, system, outputs and the meta
//   fields Hydra records (description, license short names, homepage, maintainer e-mails, schedulingPriority,
//   timeout, maxSilent, isHydraChannel).
//
// spec = { file; inputs = [{name, type, value}]; mode = "full" | "children"; only = null | [[attr path]]; strict }
//   mode "full": evaluate every job at or below the attribute paths in `only` (null: the whole expression);
//   mode "children": the attribute names below the one path in `only` ({attrs = null} when it is not a plain
//   attribute set), forcing nothing else — used to narrow down a job whose error tryEval cannot catch. strict = false wraps each job in builtins.tryEval so a job that
//   throws becomes {error = true} instead of failing the whole evaluation; strict = true lets the error escape
//   (used to obtain the message of one failing job).
// (`#{` stands for Nix's `${`, which a template literal would take for its own interpolation.)
export const EVAL_JOBS_EXPR = String.raw`
{ spec }:
let
  s = builtins.fromJSON spec;

  inputValue = i:
    if i.type == "path" then /. + i.value
    else if i.type == "boolean" then i.value == "true"
    else i.value;
  inputs = builtins.listToAttrs (map (i: { name = i.name; value = inputValue i; }) s.inputs);

  autoCall = f:
    if builtins.isFunction f then
      let
        formals = builtins.functionArgs f;
        sys = if formals ? system && !formals.system && !(inputs ? system)
              then { system = builtins.currentSystem; } else { };
      in f (builtins.intersectAttrs formals (sys // inputs))
    else f;

  isDerivation = v: (v.type or null) == "derivation";
  hasSpace = n: builtins.match ".* .*" n != null;
  showPath = builtins.concatStringsSep ".";

  metaStrings = v: sub:
    if builtins.isString v then [ v ]
    else if builtins.isList v then builtins.concatMap (x: metaStrings x sub) v
    else if builtins.isAttrs v && v ? #{sub} && builtins.isString v.#{sub} then [ v.#{sub} ]
    else [ ];
  joined = v: sub: builtins.concatStringsSep ", " (metaStrings v sub);
  metaString = meta: n: if meta ? #{n} && builtins.isString meta.#{n} then meta.#{n} else "";
  metaInt = meta: n: def:
    let v = meta.#{n} or null; in
    if builtins.isInt v then v
    else if builtins.isString v && builtins.match "-?[0-9]+" v != null then builtins.fromJSON v
    else def;
  metaBool = meta: n: let v = meta.#{n} or false; in if builtins.isBool v then v else v == "true";

  jobInfo = path: drv:
    let
      meta = if builtins.isAttrs (drv.meta or null) then drv.meta else { };
      outputNames = drv.outputs or [ "out" ];
    in {
      inherit path;
      drvPath = drv.drvPath;
      nixName = drv.name;
      system = drv.system;
      outputs = builtins.listToAttrs (map (o: { name = o; value = drv.#{o}.outPath; }) outputNames);
      description = metaString meta "description";
      license = joined (meta.license or [ ]) "shortName";
      homepage = metaString meta "homepage";
      maintainers = joined (meta.maintainers or [ ]) "email";
      schedulingPriority = metaInt meta "schedulingPriority" 100;
      timeout = metaInt meta "timeout" 36000;
      maxSilent = metaInt meta "maxSilent" 7200;
      isChannel = metaBool meta "isHydraChannel";
    };

  guard = path: value: k:
    if s.strict then k value
    else
      let r = builtins.tryEval value; in
      if r.success then k r.value else [ { inherit path; error = true; } ];

  forced = info: builtins.deepSeq info info;

  # One attribute: a list of entries (jobs, errors) found at or below it.
  visit = path: value:
    guard path (autoCall value) (v:
      if builtins.isAttrs v then
        if isDerivation v then
          guard path (forced (jobInfo path v)) (info: [ info ])
        else
          builtins.concatMap
            (n: if n == "recurseForDerivations" || hasSpace n then [ ] else visit (path ++ [ n ]) v.#{n})
            (builtins.attrNames v)
      else if v == null then [ ]
      else [ { inherit path; error = "attribute '" + showPath path + "' is a " + builtins.typeOf v + ", which is not supported"; } ]);

  top = import (/. + s.file);

  # The value at an attribute path, calling functions on the way like visit does.
  at = v: path:
    if path == [ ] then v
    else at ((autoCall v).#{builtins.head path}) (builtins.tail path);

  root =
    let r = autoCall top; in
    if builtins.isAttrs r && !(isDerivation r) then r
    else throw "the jobset expression must evaluate to an attribute set of jobs, but it is #{if builtins.isAttrs r then "a single derivation" else "a " + builtins.typeOf r}";

  childNames = v: builtins.filter (n: n != "recurseForDerivations" && !(hasSpace n)) (builtins.attrNames v);
in
  if s.mode == "children" then
    let
      p = builtins.head s.only;
      v = if p == [ ] then root else autoCall (at top p);
    in
    { attrs = if builtins.isAttrs v && !(isDerivation v) then childNames v else null; }
  else if s.only == null then builtins.seq root (visit [ ] root)
  else builtins.concatMap (p: visit p (at top p)) s.only
`.replaceAll('#{', '${');
