// Copy the minified third-party browser assets from node_modules/ into
// canal/web/static/dist/ (gitignored), where the server serves them at /static/dist/.
//
// Usage (in frontend/):  npm ci && node build.mjs
//
// Plain Node, no bundler: every asset we use already ships minified in its
// npm package. Nothing third-party is ever committed; dist/ is rebuilt from
// the lock file. Each package's licence goes along with its files.

import { copyFile, mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const modules = join(here, "node_modules");
const dist = join(here, "canal", "web", "static", "dist");

// [package, file inside the package, name in dist/]
const ASSETS = [
  ["htmx.org", "dist/htmx.min.js", "htmx.min.js"],
  ["echarts", "dist/echarts.min.js", "echarts.min.js"],
  ["@picocss/pico", "css/pico.min.css", "pico.min.css"],
];

const LICENSES = [
  ["htmx.org", "LICENSE"],
  ["echarts", "LICENSE"],
  ["@picocss/pico", "LICENSE.md"],
];

async function exists(path) {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

async function main() {
  if (!(await exists(modules))) {
    console.error("node_modules/ is missing: run `npm ci` in frontend/ first.");
    process.exit(1);
  }
  await rm(dist, { recursive: true, force: true });
  await mkdir(join(dist, "licenses"), { recursive: true });

  const manifest = {};
  for (const [pkg, file, target] of ASSETS) {
    const source = join(modules, pkg, file);
    if (!(await exists(source))) {
      console.error(`missing ${pkg}/${file}: is the installed version the one in package-lock.json?`);
      process.exit(1);
    }
    await copyFile(source, join(dist, target));
    const { version } = JSON.parse(await readFile(join(modules, pkg, "package.json"), "utf8"));
    manifest[target] = { package: pkg, version };
    console.log(`dist/${target}  <-  ${pkg}@${version}/${file}`);
  }
  for (const [pkg, file] of LICENSES) {
    const source = join(modules, pkg, file);
    if (await exists(source)) {
      await copyFile(source, join(dist, "licenses", `${pkg.replace("/", "__")}.${file}`));
    }
  }
  // Which versions are being served; handy when checking a deployment.
  await writeFile(join(dist, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
}

await main();
