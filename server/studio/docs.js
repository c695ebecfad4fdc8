// docs.js — renders /openapi.yaml with Redoc (compiled into the daemon;
// nothing is fetched from another origin).
const el = document.getElementById('redoc');
Redoc.init(el.dataset.spec, {
    hideDownloadButton: false,
    expandResponses: '200,202',
    pathInMiddlePanel: true,
    theme: {typography: {fontFamily: 'system-ui, sans-serif', headings: {fontFamily: 'system-ui, sans-serif'}}},
}, el);
