// The job to show comes from the page's address: ?job=ID.
const id = new URLSearchParams(location.search).get("job");
if (id) document.getElementById("progress").setAttribute("job-id", id);
