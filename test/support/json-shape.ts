// A small strict validator for documented JSON shapes: every documented key must be present with the
// documented type, and no undocumented key may appear.
//   'number' 'string' 'boolean' 'null' 'any'  — a type; prefix '?' allows null ('?number')
//   [shape]                                    — an array whose elements all match shape
//   {key: shape}                               — an object with exactly these keys
//   {'*': shape}                               — an object whose values all match shape (any keys)
export type Shape = string | Shape[] | {[key: string]: Shape};

export function shapeErrors(value: unknown, shape: Shape, path = '$'): string[] {
  if (typeof shape === 'string') {
    if (shape === 'any') return [];
    const nullable = shape.startsWith('?');
    const type = nullable ? shape.slice(1) : shape;
    if (value === null) return nullable || type === 'null' ? [] : [`${path}: null, expected ${type}`];
    if (type === 'any') return [];
    const actual = Array.isArray(value) ? 'array' : typeof value;
    return actual === type ? [] : [`${path}: ${actual}, expected ${shape}`];
  }
  if (Array.isArray(shape)) {
    if (!Array.isArray(value)) return [`${path}: ${value === null ? 'null' : typeof value}, expected array`];
    return value.flatMap((v, i) => shapeErrors(v, shape[0]!, `${path}[${i}]`));
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return [`${path}: expected object`];
  const obj = value as Record<string, unknown>;
  if ('*' in shape && Object.keys(shape).length === 1) return Object.entries(obj).flatMap(([k, v]) => shapeErrors(v, shape['*']!, `${path}.${k}`));
  const errors: string[] = [];
  for (const key of Object.keys(shape)) {
    if (!(key in obj)) errors.push(`${path}.${key}: missing`);
    else errors.push(...shapeErrors(obj[key], shape[key]!, `${path}.${key}`));
  }
  for (const key of Object.keys(obj)) if (!(key in shape)) errors.push(`${path}.${key}: not documented`);
  return errors;
}
