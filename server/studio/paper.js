// studio.js — the paper view (/paper).
import {getJSON, describe} from './api.js';

const main = document.getElementById('paper');
getJSON('/v1/models').then((doc) => {
    main.textContent = `${doc.models.length} models resident.`;
}, (err) => {
    main.textContent = describe(err);
});
