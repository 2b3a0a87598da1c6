// `@tensorflow/tfjs-core` alone registers no gradient functions, and no build of it that Node can
// import contains them: the `@tensorflow/tfjs` umbrella bundles them into its own builds. Every
// model of bytelatent trains, so importing `@bytelatent/nn` loads the umbrella (which our users'
// stack has anyway); it shares the engine and the kernel and gradient registries with tfjs-core.
import '@tensorflow/tfjs';
