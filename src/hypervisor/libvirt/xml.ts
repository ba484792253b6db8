/**
 * The XML subset libvirt speaks: elements, attributes, text, comments and the
 * five predefined entities plus character references; no DTDs, namespaces
 * are kept as part of names. Small enough to own rather than depend on a
 * parser package: libvirt's output is machine-written and well-formed.
 */
import { HavenError } from '../../errors/index.ts';

export interface XmlElement {
  name: string;
  attributes: Record<string, string>;
  children: XmlElement[];
  /** Concatenated text directly inside the element, trimmed. */
  text: string;
}

const ENTITIES: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };
const NAME = /^[A-Za-z_][-\w.:]*/;
const ATTRIBUTE = /([A-Za-z_][-\w.:]*)\s*=\s*(?:"([^"]*)"|'([^']*)')/g;

function decode(text: string): string {
  return text.replace(/&(#x[0-9a-fA-F]+|#\d+|\w+);/g, (whole, entity: string) => {
    if (entity.startsWith('#x')) return String.fromCodePoint(Number.parseInt(entity.slice(2), 16));
    if (entity.startsWith('#')) return String.fromCodePoint(Number.parseInt(entity.slice(1), 10));
    return ENTITIES[entity] ?? whole;
  });
}

function malformed(why: string, at: number): HavenError {
  return new HavenError('internal', `malformed XML from libvirt: ${why} at character ${at}`, { at });
}

/** Parses one document and returns its root element. */
export function parseXml(source: string): XmlElement {
  const stack: XmlElement[] = [];
  let root: XmlElement | undefined;
  const texts: string[][] = [];
  let at = 0;
  while (at < source.length) {
    const open = source.indexOf('<', at);
    const textEnd = open < 0 ? source.length : open;
    if (textEnd > at && stack.length > 0) texts.at(-1)!.push(decode(source.slice(at, textEnd)));
    if (open < 0) break;
    const skipTo = (terminator: string) => {
      const end = source.indexOf(terminator, open);
      if (end < 0) throw malformed(`unterminated '${source.slice(open, open + 9)}'`, open);
      return end + terminator.length;
    };
    if (source.startsWith('<?', open)) at = skipTo('?>');
    else if (source.startsWith('<!--', open)) at = skipTo('-->');
    else if (source.startsWith('<![CDATA[', open)) {
      at = skipTo(']]>');
      texts.at(-1)?.push(source.slice(open + 9, at - 3));
    } else if (source.startsWith('<!', open)) at = skipTo('>');
    else if (source.startsWith('</', open)) {
      at = skipTo('>');
      const name = source.slice(open + 2, at - 1).trim();
      const element = stack.pop();
      if (element?.name !== name) throw malformed(`'</${name}>' closes '${element?.name}'`, open);
      element.text = texts.pop()!.join('').trim();
    } else {
      at = skipTo('>');
      const inner = source.slice(open + 1, at - 1);
      const selfClosing = inner.endsWith('/');
      const name = NAME.exec(inner)?.[0];
      if (!name) throw malformed('element without a name', open);
      const attributes: Record<string, string> = {};
      for (const match of inner.slice(name.length).matchAll(ATTRIBUTE)) {
        attributes[match[1]!] = decode(match[2] ?? match[3] ?? '');
      }
      const element: XmlElement = { name, attributes, children: [], text: '' };
      if (stack.length > 0) stack.at(-1)!.children.push(element);
      else if (root) throw malformed('a second root element', open);
      else root = element;
      if (!selfClosing) {
        stack.push(element);
        texts.push([]);
      }
    }
  }
  if (!root || stack.length > 0)
    throw malformed(root ? `'<${stack.at(-1)!.name}>' is not closed` : 'no element', at);
  return root;
}

export function childOf(element: XmlElement | undefined, name: string): XmlElement | undefined {
  return element?.children.find((child) => child.name === name);
}

export function childrenOf(element: XmlElement | undefined, name: string): XmlElement[] {
  return element?.children.filter((child) => child.name === name) ?? [];
}

/** An element to write: attributes left undefined are omitted; `content` is text or child elements. */
export interface XmlNode {
  name: string;
  attributes?: Record<string, string | number | undefined>;
  content?: string | Array<XmlNode | undefined>;
}

export function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => `&${Object.entries(ENTITIES).find(([, v]) => v === c)![0]};`);
}

/** Writes an element tree, two spaces per level. */
export function writeXml(node: XmlNode, indent = ''): string {
  const attributes = Object.entries(node.attributes ?? {})
    .filter(([, value]) => value !== undefined)
    .map(([key, value]) => ` ${key}='${escapeXml(String(value))}'`)
    .join('');
  const head = `${indent}<${node.name}${attributes}`;
  if (node.content === undefined || node.content.length === 0) return `${head}/>\n`;
  if (typeof node.content === 'string') return `${head}>${escapeXml(node.content)}</${node.name}>\n`;
  const inner = node.content
    .filter((child) => child !== undefined)
    .map((child) => writeXml(child, `${indent}  `))
    .join('');
  return `${head}>\n${inner}${indent}</${node.name}>\n`;
}
