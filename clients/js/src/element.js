// <job-progress>: a live progress bar for one job, as a custom element. Importing this module
// (or the main one, in a browser) registers it; JobProgressElement is exported for subclassing.
export { JobProgressElement } from "./jobcast.js";
