export { JobProgressElement } from "./jobcast.js";

declare global {
  interface HTMLElementTagNameMap {
    "job-progress": import("./jobcast.js").JobProgressElement;
  }
}
