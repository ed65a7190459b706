// plotly.js with only the trace types the dashboard draws: scatter (in the core), bar (the
// Explain page) and heatmap (the Models page). The full "cartesian" bundle takes about three
// times as long to start in the browser, at every page load. Built by plotly-ecg.build.sh.
'use strict';

var Plotly = require('plotly.js/lib/core');

Plotly.register([require('plotly.js/lib/bar'), require('plotly.js/lib/heatmap')]);

module.exports = Plotly;
