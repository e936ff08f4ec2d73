/**
 * The structure ARCHITECTURE.md describes, checked on the source: every folder imports only folders on lower
 * layers (the order is read from ARCHITECTURE.md's `layers` block, so the note and the check cannot drift), no
 * module imports itself through a cycle, code outside kite/ reaches it through its index, and workflow code takes
 * only types, or pure import-free modules, from outside workflows/. Type-only imports and lazy require() count
 * like any import.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

const ROOT = path.resolve(__dirname, '../..');
/** Folders that are not code of the project (or are checked by their own rules). */
const NOT_LAYERED = new Set(['node_modules', 'lib', 'lib-simulator', 'coverage', 'test', 'scripts']);

/** Layers from ARCHITECTURE.md, top first: each line of the block is one layer of folders. */
function readLayers(): string[][] {
  const text = readFileSync(path.join(ROOT, 'ARCHITECTURE.md'), 'utf8');
  const block = /<!-- layers -->\s*```text\n([\s\S]*?)```/.exec(text);
  if (!block) throw new Error('ARCHITECTURE.md has no <!-- layers --> block');
  return block[1]
    .split('\n')
    .map((line) => line.replace(/#.*/, '').trim())
    .filter(Boolean)
    .map((line) => line.split(/\s+/).map((folder) => folder.replace(/\/$/, '')));
}

function codeFolders(): string[] {
  return readdirSync(ROOT).filter(
    (name) =>
      !name.startsWith('.') &&
      !NOT_LAYERED.has(name) &&
      statSync(path.join(ROOT, name)).isDirectory() &&
      sourceFiles(name).length > 0
  );
}

function sourceFiles(dir: string): string[] {
  return readdirSync(path.join(ROOT, dir), { withFileTypes: true }).flatMap((entry) => {
    const rel = path.join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(rel);
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts') ? [rel] : [];
  });
}

/** The project files `file` imports (relative imports, re-exports and require() calls), as root-relative paths. */
function importsOf(file: string): string[] {
  const info = ts.preProcessFile(readFileSync(path.join(ROOT, file), 'utf8'), true, true);
  return info.importedFiles
    .map((imported) => imported.fileName)
    .filter((name) => name.startsWith('.'))
    .map((name) => resolve(path.join(path.dirname(file), name)))
    .filter((target): target is string => target !== undefined);
}

function resolve(base: string): string | undefined {
  return [`${base}.ts`, path.join(base, 'index.ts'), base].find(
    (candidate) => candidate.endsWith('.ts') && existsSync(path.join(ROOT, candidate))
  );
}

export type ImportGraph = Map<string, string[]>;

function importGraph(folders: string[]): ImportGraph {
  return new Map(folders.flatMap(sourceFiles).map((file) => [file, importsOf(file)]));
}

const folderOf = (file: string) => file.split(path.sep)[0];

/** Imports of a folder from a folder on its own or a higher layer (or from a folder the layers do not place). */
export function layerViolations(graph: ImportGraph, layers: string[][]): string[] {
  const level = new Map(layers.flatMap((folders, i) => folders.map((folder) => [folder, layers.length - i])));
  const out: string[] = [];
  for (const [file, targets] of graph) {
    for (const target of targets) {
      const from = folderOf(file);
      const to = folderOf(target);
      if (from === to || !level.has(to) || !level.has(from)) continue;
      if (level.get(to)! >= level.get(from)!) out.push(`${file} imports ${target}: ${from}/ may not import ${to}/`);
    }
  }
  return out;
}

/**
 * Imports by workflow code of values from outside workflows/ that are not pure: the workflow sandbox bundles them,
 * so only types, or modules that import nothing but types themselves, may cross.
 */
function impureWorkflowImports(graph: ImportGraph): string[] {
  const out: string[] = [];
  for (const file of [...graph.keys()].filter((f) => folderOf(f) === 'workflows')) {
    const source = ts.createSourceFile(file, readFileSync(path.join(ROOT, file), 'utf8'), ts.ScriptTarget.ES2022);
    for (const statement of source.statements) {
      if (!ts.isImportDeclaration(statement) && !ts.isExportDeclaration(statement)) continue;
      const specifier = statement.moduleSpecifier;
      if (!specifier || !ts.isStringLiteral(specifier) || !specifier.text.startsWith('.')) continue;
      const target = resolve(path.join(path.dirname(file), specifier.text));
      if (!target || folderOf(target) === 'workflows' || typeOnly(statement)) continue;
      if (valueImportsOf(target).length > 0) out.push(`${file} imports values from ${target}`);
    }
  }
  return out;
}

/**
 * What a module imports for its values, packages included: type-only imports are erased by the compiler, so a
 * module whose imports are all type-only is as safe in the workflow bundle as one with no imports at all.
 */
function valueImportsOf(file: string): string[] {
  const source = ts.createSourceFile(file, readFileSync(path.join(ROOT, file), 'utf8'), ts.ScriptTarget.ES2022);
  return source.statements
    .filter(
      (s): s is ts.ImportDeclaration | ts.ExportDeclaration => ts.isImportDeclaration(s) || ts.isExportDeclaration(s)
    )
    .filter((s) => s.moduleSpecifier && ts.isStringLiteral(s.moduleSpecifier) && !typeOnly(s))
    .map((s) => (s.moduleSpecifier as ts.StringLiteral).text);
}

function typeOnly(statement: ts.ImportDeclaration | ts.ExportDeclaration): boolean {
  if (ts.isExportDeclaration(statement)) return statement.isTypeOnly;
  const clause = statement.importClause;
  if (!clause) return false; // a side-effect import
  if (clause.isTypeOnly) return true;
  const named = clause.namedBindings;
  return !clause.name && !!named && ts.isNamedImports(named) && named.elements.every((e) => e.isTypeOnly);
}

/** Every import cycle, as the files of each strongly connected component (Tarjan). */
export function importCycles(graph: ImportGraph): string[][] {
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  const visit = (node: string) => {
    index.set(node, counter);
    low.set(node, counter++);
    stack.push(node);
    onStack.add(node);
    for (const next of graph.get(node) ?? []) {
      if (!index.has(next)) {
        visit(next);
        low.set(node, Math.min(low.get(node)!, low.get(next)!));
      } else if (onStack.has(next)) low.set(node, Math.min(low.get(node)!, index.get(next)!));
    }
    if (low.get(node) === index.get(node)) {
      const component: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        onStack.delete(member);
        component.push(member);
      } while (member !== node);
      if (component.length > 1 || (graph.get(node) ?? []).includes(node)) cycles.push(component.sort());
    }
  };
  for (const node of graph.keys()) if (!index.has(node)) visit(node);
  return cycles;
}

describe('the checks catch what they are for', () => {
  const layers = [['worker'], ['activities'], ['shared']];
  test('an import upward or sideways is a violation; downward is fine', () => {
    const graph: ImportGraph = new Map([
      ['shared/log.ts', ['activities/fetch.ts']],
      ['activities/fetch.ts', ['shared/log.ts']],
      ['worker/main.ts', ['activities/fetch.ts', 'shared/log.ts']],
    ]);
    expect(layerViolations(graph, layers)).toEqual([
      'shared/log.ts imports activities/fetch.ts: shared/ may not import activities/',
    ]);
    expect(layerViolations(new Map([['worker/a.ts', ['cli/b.ts']]]), [['worker', 'cli']])).toHaveLength(1);
  });
  test('a cycle through three files is found, a diamond is not a cycle', () => {
    const cyclic: ImportGraph = new Map([
      ['a.ts', ['b.ts']],
      ['b.ts', ['c.ts']],
      ['c.ts', ['a.ts']],
    ]);
    expect(importCycles(cyclic)).toEqual([['a.ts', 'b.ts', 'c.ts']]);
    const diamond: ImportGraph = new Map([
      ['a.ts', ['b.ts', 'c.ts']],
      ['b.ts', ['d.ts']],
      ['c.ts', ['d.ts']],
    ]);
    expect(importCycles(diamond)).toEqual([]);
  });
});

describe('the source tree', () => {
  const layers = readLayers();
  const folders = codeFolders();
  const graph = importGraph(folders);

  test('ARCHITECTURE.md places every code folder on a layer, and names no folder that does not exist', () => {
    const placed = layers.flat();
    expect(folders.filter((folder) => !placed.includes(folder))).toEqual([]);
    expect(placed.filter((folder) => !folders.includes(folder))).toEqual([]);
  });

  test('every folder imports only folders on lower layers', () => {
    expect(layerViolations(graph, layers)).toEqual([]);
  });

  test('no import cycles', () => {
    expect(graph.size).toBeGreaterThan(50);
    expect(importCycles(graph)).toEqual([]);
  });

  test('workflow code takes only types, or pure import-free modules, from outside workflows/', () => {
    expect(impureWorkflowImports(graph)).toEqual([]);
  });

  test('code outside kite/ imports it through its index', () => {
    const inside = [...graph].flatMap(([file, targets]) =>
      folderOf(file) === 'kite'
        ? []
        : targets.filter((t) => folderOf(t) === 'kite' && t !== path.join('kite', 'index.ts'))
    );
    expect(inside).toEqual([]);
  });
});
