// Store derivations: the entry point of the three modules that read them — drv-aterm.ts (the Derivation type and
// the ATerm parser of `.drv` files), drv-attrs.ts (the attributes the step graph and the builders need) and
// basic-derivation.ts (the BasicDerivation sent with BuildDerivation). Nothing else lives here.
export * from './drv-aterm.js';
export * from './drv-attrs.js';
export * from './basic-derivation.js';
