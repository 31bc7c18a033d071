// Every page: relative times ("in 10 minutes") kept current, with the absolute time in the viewer's
// own time zone on hover (the server writes them relative to when it rendered the page).
import { showRelativeTimes } from "./ui.js";

const EVERY_MS = 10_000;
showRelativeTimes();
setInterval(showRelativeTimes, EVERY_MS);
