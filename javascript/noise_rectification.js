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
            Object.keys(hints).forEach(function (id) {
                const root = app.querySelector("#" + CSS.escape(id));
                if (!root) return;
                root.title = hints[id];
                root.querySelectorAll("label, span, input, textarea").forEach(function (el) {
                    if (!el.title) el.title = hints[id];
                });
            });
        });
    }
    onUiLoaded(applyHints);
})();
