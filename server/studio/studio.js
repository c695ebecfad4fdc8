// studio.js — the attack studio (/).
import {getJSON, describe} from './api.js';

const main = document.getElementById('studio');
getJSON('/v1/models').then((doc) => {
    main.textContent = `${doc.models.length} models resident.`;
}, (err) => {
    main.textContent = describe(err);
});
