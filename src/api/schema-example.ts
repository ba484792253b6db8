/**
 * An example value of a JSON Schema, built from the schema itself: the
 * examples its declarations give (`.meta({ examples })`), else defaults,
 * constants, the first choice of an enum or union, and a plain value of the
 * type. The OpenAPI document shows one per request and answer, and
 * docs/api.md prints them, so an example cannot drift from its schema.
 */
export function exampleOf(
  schema: unknown,
  components: Record<string, unknown>,
  options: { requiredOnly?: boolean } = {},
): unknown {
  return example(schema, components, options.requiredOnly ?? false, new Set());
}

type Schema = Record<string, unknown>;

const TIME = '2026-03-02T09:30:00.000Z';

function example(
  value: unknown,
  components: Record<string, unknown>,
  requiredOnly: boolean,
  seen: Set<string>,
): unknown {
  if (value === null || typeof value !== 'object') return null;
  const schema = value as Schema;
  if (Array.isArray(schema.examples) && schema.examples.length > 0) return schema.examples[0];
  if ('default' in schema) return schema.default;
  if ('const' in schema) return schema.const;
  if (typeof schema.$ref === 'string') {
    const id = schema.$ref.replace('#/components/schemas/', '');
    // A schema that contains itself ends at null rather than recursing.
    if (seen.has(id)) return null;
    return example(components[id], components, requiredOnly, new Set([...seen, id]));
  }
  if (Array.isArray(schema.enum)) return schema.enum[0];
  for (const key of ['anyOf', 'oneOf'] as const) {
    const choices = schema[key];
    if (Array.isArray(choices)) {
      // Nullable fields show their value, not null.
      const first = choices.find((c) => (c as Schema).type !== 'null') ?? choices[0];
      return example(first, components, requiredOnly, seen);
    }
  }
  if (Array.isArray(schema.allOf)) {
    return Object.assign({}, ...schema.allOf.map((s) => example(s, components, requiredOnly, seen)));
  }
  const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== 'null') : schema.type;
  switch (type) {
    case 'object': {
      const properties = (schema.properties ?? {}) as Record<string, unknown>;
      const required = new Set((schema.required as string[] | undefined) ?? []);
      return Object.fromEntries(
        Object.entries(properties)
          .filter(([name]) => !requiredOnly || required.has(name))
          .map(([name, property]) => [name, example(property, components, requiredOnly, seen)]),
      );
    }
    case 'array':
      return schema.items === undefined ? [] : [example(schema.items, components, requiredOnly, seen)];
    case 'string':
      return schema.format === 'date-time' ? TIME : 'text';
    case 'integer':
    case 'number':
      return typeof schema.multipleOf === 'number'
        ? schema.multipleOf
        : typeof schema.minimum === 'number'
          ? schema.minimum
          : 1;
    case 'boolean':
      return false;
    case 'null':
      return null;
    default:
      return null;
  }
}
