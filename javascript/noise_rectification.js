// Hover hints for the Noise Rectification accordion.
// The texts come from Python (lib_rectify's field specs) through a hidden JSON block,
// so there is one source of truth; this file only attaches them as `title`s.
(function () {
    function applyHints() {
        const app = gradioApp();
        app.querySelectorAll("script.nr-hints").forEach(function (block) {
            let hints = {};
            try {
                hints = JSON.parse(block.textContent);
            } catch (e) {
                return;
            }
            // Controls sit inside the accordion: an element takes the hint of its
            // nearest hinted ancestor, so the accordion's hint never covers theirs.
            const hinted = Object.keys(hints).map(function (k) { return "#" + CSS.escape(k); }).join(",");
            Object.keys(hints).forEach(function (id) {
                const root = app.querySelector("#" + CSS.escape(id));
                if (!root) return;
                root.title = hints[id];
                root.querySelectorAll("label, span, input, textarea").forEach(function (el) {
                    if (el.closest(hinted) === root) el.title = hints[id];
                });
            });
        });
    }
    onUiLoaded(applyHints);
})();
