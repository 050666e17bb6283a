// MathJax 3 for the maths in docstrings and pages (pymdownx.arithmatex, generic mode: \(...\)
// and \[...\]) and in the notebooks' Markdown cells, which mkdocs-jupyter leaves as $...$.
// Code blocks (<pre>, <code>) are skipped, as MathJax does by default.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"], ["$", "$"]],
    displayMath: [["\\[", "\\]"], ["$$", "$$"]],
    processEscapes: true,
    processEnvironments: true,
  },
};

// Material for MkDocs swaps pages without reloading: typeset each new page.
document$.subscribe(() => {
  MathJax.startup.output.clearCache();
  MathJax.typesetClear();
  MathJax.texReset();
  MathJax.typesetPromise();
});
