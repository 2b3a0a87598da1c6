// `@tensorflow/tfjs-core` alone registers no gradient functions (the `@tensorflow/tfjs` umbrella
// does, through this same module). Every model of bytelatent trains, so importing `@bytelatent/nn`
// registers them; the registration is idempotent across copies of this import.
import '@tensorflow/tfjs-core/dist/register_all_gradients.js';
