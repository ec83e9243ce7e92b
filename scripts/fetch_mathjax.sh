#!/usr/bin/env bash
# Refresh the book's bundled MathJax (book/_vendor/mathjax/) from the npm registry, so that the
# book renders its formulas with no network (Sphinx's default loads MathJax from a CDN).
#
# Only what the browser needs is kept: es5/tex-chtml-full.js (TeX input with every extension
# preloaded, so nothing is fetched on demand; CommonHTML output; the menu), the CommonHTML
# woff-v2 fonts it loads from output/chtml/fonts/woff-v2 beside it, and the licence. About
# 1.7 MB. _config.yml copies book/_vendor to the build's _static (html_static_path) and points
# Sphinx at it (mathjax_path); tests/test_book.py checks that the path is local and the files
# are here. Not under book/_static: Jupyter Book 1 adds every .js there as an extra <script>.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=3.2.2
SHA1=c754d7b46a679d7f3fa03543d6b8bf124ddf9f6b  # `npm view mathjax@3.2.2 dist.shasum`
DEST=book/_vendor/mathjax

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "mathjax@$VERSION" >/dev/null)
tarball="$work/mathjax-$VERSION.tgz"
echo "$SHA1  $tarball" | sha1sum -c --quiet -
tar -xzf "$tarball" -C "$work"

rm -rf "$DEST"
mkdir -p "$DEST/output/chtml/fonts"
cp "$work/package/es5/tex-chtml-full.js" "$DEST/"
cp -r "$work/package/es5/output/chtml/fonts/woff-v2" "$DEST/output/chtml/fonts/"
cp "$work/package/LICENSE" "$DEST/LICENSE"
echo "mathjax@$VERSION (npm, sha1 $SHA1): es5/tex-chtml-full.js and its woff-v2 fonts" > "$DEST/VERSION"
du -sh "$DEST"
